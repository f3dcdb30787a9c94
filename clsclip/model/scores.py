"""The scoring rule: how the network's raw scores of an image's rows (its classes' prompts, their
negatives, the model's background prompts) become each class's logits. One definition, used by
every path (whole images and ClsCLIP+ crops, `segment_torch`, batches of mixed requests, the
torch and onnxruntime backends), so none of them can score a class differently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

LOGIT_BOUND = 50.0
"""Per-class logits are clamped to +-50 (a probability 1 - 2e-22 away from 0 or 1): a softmax
certainty of exactly 1 would otherwise be an infinite logit, and the way back mixes logits."""

SCORING_RULES = ("independent", "softmax")


def softmax_logits(
    rows: torch.Tensor, owners: Sequence[int], num_classes: int, background: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training-free references' scoring, as logits: the softmax over every query (each
    class's prompt rows ``R x h x w``, row r of class ``owners[r]``, and the ``B x h x w``
    background rows) of the scaled cosines, and a class's probability the largest of its
    rows' (ClearCLIP's and NACLIP's ``postprocess_result``).

    Returns:
        float32 ``K x h x w`` logits ``log p_k - log(1 - p_k)`` (so that the sigmoid gives the
        softmax probability back), and the background's ``h x w`` logit of the same form (the
        largest background row's probability; None without background rows). Clamped to
        +-`LOGIT_BOUND`.
    """
    rows = rows.float()
    every = torch.cat([rows, background.float().to(rows.device)]) if background.numel() else rows
    log_p = rows - torch.logsumexp(every, dim=0, keepdim=True)
    classes = torch.stack([
        log_p[[r for r, k in enumerate(owners) if k == c]].amax(dim=0) for c in range(num_classes)
    ])  # fmt: skip
    floor = None
    if background.shape[0]:
        floor = _log_odds((background.float() - torch.logsumexp(every, dim=0, keepdim=True))
                          .amax(dim=0))  # fmt: skip
    return _log_odds(classes), floor


def _log_odds(log_p: torch.Tensor) -> torch.Tensor:
    """``log p - log(1 - p)`` of log-probabilities, clamped to +-`LOGIT_BOUND`."""
    log_p = log_p.clamp(max=0.0)
    return (log_p - torch.log(-torch.expm1(log_p))).clamp(-LOGIT_BOUND, LOGIT_BOUND)


@dataclass(frozen=True)
class ScoringRule:
    """How raw row scores become class logits, for one image (or one view of it).

    ``"independent"`` (ClsCLIP, CLIPSeg): a class's raw score is its logit, a sigmoid per
    class; nothing else is scored with it.

    ``"softmax"`` (the training-free models): the prompt rows of the image's K classes compete
    with each other and with the model's B background prompts (`softmax_logits`): a class's
    probability is the softmax probability of its best row, and the background's probability
    is a floor that a class must beat to be in its mask. No other row takes part, so a class's
    logits depend on the classes of its own request only, never on another request batched
    with it, nor on any class's negatives.

    For both, a class of several prompt rows scores the largest of them at each cell (or the
    row of their mean, `clsclip.classes.rows.class_rows`), and a negative vetoes its own class
    only: where the negative's raw score beats the class's. `negative_logits` expresses a
    negative on the class's logit scale, so that this comparison is a comparison of logits
    (`clsclip.results.LowResPrediction` makes it after the way back).

    Attributes:
        kind: ``"independent"`` or ``"softmax"``.
    """

    kind: str

    def __post_init__(self) -> None:
        if self.kind not in SCORING_RULES:
            raise ValueError(
                f"unknown scoring rule {self.kind!r}; choose one of {list(SCORING_RULES)}"
            )

    @property
    def competes(self) -> bool:
        """Whether a class's logits depend on the image's other classes and the background
        rows (so every view must be scored against all of them)."""
        return self.kind == "softmax"

    def class_logits(
        self,
        rows: torch.Tensor,
        owners: Sequence[int],
        num_classes: int,
        background: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """float32 logits ``K x h x w`` of the raw scores of the classes' prompt rows ``R x h x
        w`` (row r of class ``owners[r]``) and the background rows ``B x h x w`` (B = 0 for
        independent scores), and the background floor (`softmax_logits`; None for
        independent scores or without background rows)."""
        if self.competes:
            return softmax_logits(rows, owners, num_classes, background)
        rows = rows.float()
        index = [[r for r, k in enumerate(owners) if k == c] for c in range(num_classes)]
        return torch.stack([rows[i].amax(dim=0) for i in index]), None

    def negative_logits(
        self,
        classes: torch.Tensor,
        logits: torch.Tensor,
        negatives: torch.Tensor,
        owners: tuple[int, ...],
    ) -> torch.Tensor:
        """The negatives ``N x h x w`` (raw scores; negative n belongs to class ``owners[n]``) on
        their classes' logit scale: above the class's logit exactly where the raw score is
        above the class's raw score. Not clamped, so a veto survives a class's clamped logit."""
        negatives = negatives.float()
        if not self.competes:
            return negatives
        index = list(owners)
        return logits[index] + (negatives - classes.float()[index])
