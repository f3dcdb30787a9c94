"""Matching detector labels to queried class names: names, synonyms, then CLIP similarity."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from clsclip.checks import text_key

# PASCAL VOC and COCO spell some classes differently; plus common everyday names.
DEFAULT_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("airplane", "aeroplane", "plane", "aircraft"),
    ("motorcycle", "motorbike"),
    ("couch", "sofa"),
    ("tv", "tvmonitor", "tv monitor", "television", "monitor"),
    ("dining table", "diningtable", "table"),
    ("potted plant", "pottedplant", "houseplant", "plant"),
    ("person", "people", "human", "pedestrian"),
    ("bicycle", "bike"),
    ("cell phone", "cellphone", "mobile phone", "phone", "smartphone"),
    ("car", "automobile"),
    ("sheep", "lamb"),
    ("cow", "cattle"),
    ("bottle", "water bottle"),
    ("laptop", "notebook computer"),
)

TextEncoder = Callable[[list[str]], torch.Tensor]
"""Maps names to ``N x E`` vectors of CLIP's text space, of any norm (for example
`Segmenter.encode_classes`); the matcher compares their directions."""


def normalize_label(name: str) -> str:
    """Lower case, ``_`` and ``-`` as spaces, single spaces, no leading article."""
    text = re.sub(r"[_\-]+", " ", name.casefold())
    text = " ".join(text.split())
    return re.sub(r"^(a|an|the) ", "", text)


class LabelMatcher:
    """Decides which proposals serve which queried class.

    A proposal matches a class when their normalised names are equal (spaces ignored, so
    ``"diningtable"`` matches ``"dining table"``), when both are in one synonym group, or, as a
    fallback, when the cosine similarity of their CLIP text vectors reaches
    ``clip_threshold``. With ``class_agnostic=True`` every proposal serves every class.

    Args:
        synonyms: groups of names that mean the same class.
        clip_threshold: similarity for the CLIP fallback, or None to turn it off.
        class_agnostic: ignore labels altogether.
    """

    def __init__(
        self,
        *,
        synonyms: Iterable[Sequence[str]] = DEFAULT_SYNONYMS,
        clip_threshold: float | None = 0.9,
        class_agnostic: bool = False,
    ) -> None:
        if clip_threshold is not None and not -1.0 <= clip_threshold <= 1.0:
            raise ValueError(f"clip_threshold must be in [-1, 1] or None, got {clip_threshold}")
        self.clip_threshold = clip_threshold
        self.class_agnostic = class_agnostic
        self._group: dict[str, int] = {}
        for index, group in enumerate(synonyms):
            for name in group:
                self._group.setdefault(_key(name), index)

    def same_class(self, label: str, class_name: str) -> bool:
        """Whether two names are equal after normalisation or synonyms (no CLIP)."""
        a, b = _key(label), _key(class_name)
        return a == b or (a in self._group and self._group[a] == self._group.get(b))

    def match(
        self,
        labels: Sequence[str],
        class_names: Sequence[str],
        encode: TextEncoder | None = None,
    ) -> list[list[int]]:
        """For each class, the indices of the proposals that serve it (in proposal order)."""
        if self.class_agnostic:
            return [list(range(len(labels))) for _ in class_names]
        matches = [
            [i for i, label in enumerate(labels) if self.same_class(label, name)]
            for name in class_names
        ]
        unmatched = [k for k, found in enumerate(matches) if not found]
        if unmatched and labels and encode is not None and self.clip_threshold is not None:
            # One vector per label as CLIP reads it (case and spacing do not matter).
            keys = [text_key(label) for label in labels]
            distinct = list(dict.fromkeys(keys))
            # Cosine similarity: the encoder's vectors need not be unit (CLIPSeg's are not).
            label_vectors = F.normalize(encode(distinct).float(), dim=-1)
            class_vectors = F.normalize(encode([class_names[k] for k in unmatched]).float(), dim=-1)
            similar = (class_vectors @ label_vectors.T) >= self.clip_threshold
            for row, k in enumerate(unmatched):
                accepted = {distinct[j] for j in similar[row].nonzero().flatten().tolist()}
                matches[k] = [i for i, key in enumerate(keys) if key in accepted]
        return matches


def _key(name: str) -> str:
    return normalize_label(name).replace(" ", "")
