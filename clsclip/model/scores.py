"""The scoring rule: how the network's raw scores of an image's rows (its classes' prompts, their
negatives, the model's background prompts) become each class's logits. One definition, used by
every path (whole images and ClsCLIP+ crops, `segment_torch`, batches of mixed requests, the
torch and onnxruntime backends), so none of them can score a class differently."""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOGIT_BOUND = 50.0
"""Per-class logits are clamped to +-50 (a probability 1 - 2e-22 away from 0 or 1): a softmax
certainty of exactly 1 would otherwise be an infinite logit, and the way back mixes logits."""

SCORING_RULES = ("independent", "softmax")


def dense_logits(scores: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class logits ``V x K x h x w`` of scaled cosine similarities ``V x (K + B) x h x w``
    (the K classes, then B background prompts).

    With background prompts: ``score_k - max_b score_b``, so the probability passes 0.5 where
    the class beats the strongest background prompt, and the label map (the most probable class
    above the threshold) is the argmax over classes and background. Without: the log-odds of
    the softmax over the classes, ``log p_k - log(1 - p_k)``, so the probability is the softmax
    probability itself. Clamped to +-`LOGIT_BOUND`.
    """
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    classes = scores[:, :num_classes]
    if scores.shape[1] > num_classes:
        logits = classes - scores[:, num_classes:].amax(dim=1, keepdim=True)
    else:
        log_p = classes - torch.logsumexp(classes, dim=1, keepdim=True)
        logits = log_p - torch.log(-torch.expm1(log_p))
    return logits.clamp(-LOGIT_BOUND, LOGIT_BOUND)


@dataclass(frozen=True)
class ScoringRule:
    """How raw row scores become class logits, for one image (or one view of it).

    ``"independent"`` (ClsCLIP, CLIPSeg): a class's raw score is its logit, a sigmoid per
    class; nothing else is scored with it.

    ``"softmax"`` (the training-free models): the image's K classes compete with each other and
    with the model's B background prompts (`dense_logits`); no other row takes part, so a
    class's logits depend on the classes of its own request only, never on another request
    batched with it, nor on any class's negatives or individual prompts.

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

    def class_logits(self, classes: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
        """float32 logits ``K x h x w`` of the raw class scores ``K x h x w`` and the
        background rows' ``B x h x w`` (B = 0 for independent scores)."""
        classes = classes.float()
        if not self.competes:
            return classes
        scores = torch.cat([classes, background.float().to(classes.device)])
        return dense_logits(scores[None], classes.shape[0])[0]

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
