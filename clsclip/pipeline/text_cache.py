"""Class vectors cached by name: bounded, least recently used out, safe to share between threads.

One cache serves inference (`Segmenter`) and training (where the text tower is frozen).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

DEFAULT_ENTRIES = 4096
"""Names kept by default (a few MB of vectors)."""


class TextCache:
    """Vectors of names from ``encode``, each name encoded once while it stays in the cache.

    Args:
        encode: maps a list of N names to an ``N x E`` tensor.
        max_entries: names kept; a call may ask for more (all of them are returned), and the
            least recently used are dropped after it.
    """

    def __init__(
        self, encode: Callable[[list[str]], torch.Tensor], *, max_entries: int = DEFAULT_ENTRIES
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._encode = encode
        self.max_entries = max_entries
        self._vectors: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, names: Sequence[str]) -> torch.Tensor:
        """``K x E`` vectors of ``names`` (leading and trailing spaces ignored), in order."""
        keys = [name.strip() for name in names]
        with self._lock:
            found = {key: self._vectors[key] for key in keys if key in self._vectors}
            missing = [key for key in dict.fromkeys(keys) if key not in found]
            if missing:
                found.update(zip(missing, self._encode(missing), strict=True))
            for key in dict.fromkeys(keys):  # most recently used last
                self._vectors[key] = found[key]
                self._vectors.move_to_end(key)
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)
        return torch.stack([found[key] for key in keys])

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()

    def __len__(self) -> int:
        return len(self._vectors)
