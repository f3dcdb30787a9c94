"""Class specs as rows of one text tensor: each distinct prompt (or each class's combined
prompts) once, and where each class's prompt and negative rows are."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from clsclip.checks import text_key
from clsclip.classes.spec import ClassSpec
from clsclip.config.base import PROMPT_RULES

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


@dataclass(frozen=True)
class RowLayout:
    """Where each class's rows are in the text tensor the network reads.

    Attributes:
        prompts: per class, the rows whose logits make it (one row, or one per prompt with the
            ``"max"`` rule; their largest logit at each cell is the class's).
        negatives: per class, the rows it must beat (empty for most classes).
    """

    prompts: tuple[tuple[int, ...], ...]
    negatives: tuple[tuple[int, ...], ...]

    @classmethod
    def plain(cls, num_classes: int) -> RowLayout:
        """Class k is row k, no negatives: plain class names."""
        return cls(tuple((k,) for k in range(num_classes)), ((),) * num_classes)

    @property
    def is_plain(self) -> bool:
        return all(rows == (k,) for k, rows in enumerate(self.prompts)) and not any(self.negatives)

    def shifted(self, offset: int) -> RowLayout:
        """The same layout for rows that start at ``offset`` of a larger tensor."""
        return RowLayout(
            tuple(tuple(r + offset for r in rows) for rows in self.prompts),
            tuple(tuple(r + offset for r in rows) for rows in self.negatives),
        )

    @property
    def all_rows(self) -> list[int]:
        """Every row the whole image is scored against, each once, in order."""
        seen: dict[int, None] = {}
        for rows in (*self.prompts, *self.negatives):
            seen.update(dict.fromkeys(rows))
        return list(seen)


def class_rows(
    specs: Sequence[ClassSpec], encode: TextEncoder, rule: str = "mean"
) -> tuple[torch.Tensor, RowLayout]:
    """The text tensor (``R x D``) and layout of ``specs``.

    Plain specs give exactly ``encode(names)`` and the plain layout. Texts shared by several
    classes (a prompt, a negative) are one row. With ``rule="mean"`` a class of several prompts
    is one row: the mean of its prompts' vectors, normalised again when the model's vectors are
    unit length (as prompt templates are combined).
    """
    if rule not in PROMPT_RULES:
        raise ValueError(f"unknown prompt_rule {rule!r}; choose one of {list(PROMPT_RULES)}")
    texts: dict[str, tuple[int, str]] = {}  # each text once: its row and first spelling

    def text_row(text: str) -> int:
        key = text_key(text)  # as CLIP reads it: one row per reading
        return texts.setdefault(key, (len(texts), text))[0]

    combined: list[tuple[int, ...]] = []  # per class: its texts' rows (before combining)
    negatives: list[tuple[int, ...]] = []
    for spec in specs:
        combined.append(tuple(text_row(p) for p in spec.prompts))
        negatives.append(tuple(text_row(n) for n in spec.negatives))
    unique = [text for _, text in texts.values()]
    vectors = encode(unique)
    if rule == "max" or all(len(rows) == 1 for rows in combined):
        return vectors, RowLayout(tuple(combined), tuple(negatives))
    # "mean": a class of several prompts gets a row of its own after the texts
    extra: list[torch.Tensor] = []
    prompts: list[tuple[int, ...]] = []
    norms = vectors.norm(dim=-1)
    unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-3))
    for rows in combined:
        if len(rows) == 1:
            prompts.append(rows)
            continue
        mean = vectors[list(rows)].mean(dim=0)
        extra.append(mean / mean.norm() if unit else mean)
        prompts.append((len(unique) + len(extra) - 1,))
    text = torch.cat([vectors, torch.stack(extra)]) if extra else vectors
    return text, RowLayout(tuple(prompts), tuple(negatives))
