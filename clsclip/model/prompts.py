"""Class names as CLIP prompts: tokenised through the templates, and their vectors combined."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


def tokenize_prompts(
    tokenizer: Callable[..., torch.Tensor], templates: Sequence[str], names: Sequence[str]
) -> torch.Tensor:
    """Token ids of every (name, template) prompt, name-major: ``(K * T) x context``.

    Raises `ValueError` naming the class when a prompt does not fit the text encoder's
    context: the tokenizer would cut it silently, and two names that differ only past the
    cut would get the same vector.
    """
    prompts = [t.format(n) for n in names for t in templates]
    context = getattr(tokenizer, "context_length", None)
    if not isinstance(context, int):
        return tokenizer(prompts)
    try:  # one position more than the encoder reads shows whether a prompt was cut
        ids = tokenizer(prompts, context_length=context + 1)
    except TypeError:
        return tokenizer(prompts)
    pad = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", None) or 0
    cut = torch.nonzero(ids[:, context] != pad)
    if cut.numel():
        row = int(cut[0, 0])
        name = names[row // len(templates)]
        raise ValueError(
            f"class name {name[:60]!r}{'...' if len(name) > 60 else ''} is too long: the "
            f"prompt {templates[row % len(templates)]!r} with it "
            f"is over the text encoder's {context} tokens; shorten it"
        )
    return ids[:, :context]


def combine_prompts(vectors: torch.Tensor, *, normalize: bool) -> torch.Tensor:
    """One vector per class from its prompts' vectors ``K x T x E`` (float32 ``K x E``).

    ``normalize``: unit-normalise each prompt's vector, average, normalise again (CLIP's prompt
    ensembling; ClsCLIP). Otherwise the raw vectors are averaged (CLIPSeg's FiLM reads them).
    """
    vectors = vectors.float()
    if not normalize:
        return vectors.mean(dim=1)
    return F.normalize(F.normalize(vectors, dim=-1).mean(dim=1), dim=-1)
