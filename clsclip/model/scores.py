"""Per-class logits of classes that compete (the training-free models score a softmax)."""

from __future__ import annotations

import torch

LOGIT_BOUND = 50.0
"""Per-class logits are clamped to +-50 (a probability 1 - 2e-22 away from 0 or 1): a softmax
certainty of exactly 1 would otherwise be an infinite logit, and the way back mixes logits."""


def dense_logits(scores: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class logits ``V x K x h x w`` of scaled cosine similarities ``V x (K + B) x h x w``
    (the K classes, then B background prompts).

    With background prompts: ``score_k - max_b score_b``, so the probability passes 0.5 where
    the class beats the strongest background prompt, and the label map (the most probable class
    above the threshold) is the references' argmax over classes and background. Without: the
    log-odds of the softmax over the classes, ``log p_k - log(1 - p_k)``, so the probability is
    the softmax probability itself. Clamped to +-`LOGIT_BOUND`.
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
