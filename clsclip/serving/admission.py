"""What all requests together may hold at once: upload bytes being read and decoded pixels.

The queue (`clsclip.serving.batcher`) bounds the work that waits for the network; this bounds
the memory of the requests before and after it (concurrent uploads, each up to the body limit;
decoded images, each up to the pixel limit; answers being built). A request that would go over
is refused at once with 503 and ``Retry-After``, like a full queue, and what it had reserved is
given back when it ends, however it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class OverBudget(RuntimeError):
    """This request would take the server over an in-flight bound: shed it (503).

    Attributes:
        limit: the setting that bounds it (``max_inflight_bytes`` or ``max_inflight_pixels``).
    """

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class Budget:
    """A thread-safe amount that reservations take from and give back.

    Args:
        name: the setting it stands for (in messages and `OverBudget.limit`).
        total: the most that may be reserved at once.
        unit: what is counted (``"bytes"``, ``"pixels"``), for messages.
    """

    def __init__(self, name: str, total: int, unit: str) -> None:
        self.name, self.total, self.unit = name, total, unit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def take(self, amount: int) -> None:
        """Reserve ``amount`` or raise `OverBudget` (nothing reserved). A request larger than
        the whole budget is still admitted when nothing else holds any: a lone request never
        waits on this bound, only on its own limits."""
        with self._lock:
            if self._used and self._used + amount > self.total:
                raise OverBudget(
                    f"requests in flight hold {self._used:,} {self.unit}; this one would take "
                    f"them past {self.total:,} (--{self.name.replace('_', '-')})",
                    self.name,
                )
            self._used += amount

    def give(self, amount: int) -> None:
        with self._lock:
            self._used = max(0, self._used - amount)

    @contextmanager
    def held(self, amount: int) -> Iterator[None]:
        """`take` for the block, `give` after it."""
        self.take(amount)
        try:
            yield
        finally:
            self.give(amount)
