"""Text [CLS] navigation: the projected text vector replaces the visual [CLS] token."""

from __future__ import annotations

import torch
from torch import nn


class TextNavigator(nn.Module):
    """The trainable linear map from CLIP's text space to the visual token width.

    Args:
        embed_dim: size of the text [CLS] vector (CLIP's joint embedding dimension).
        width: token width of the visual transformer.
    """

    def __init__(self, *, embed_dim: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, width)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        """``P x embed_dim`` text vectors -> ``P x width`` [CLS] tokens."""
        return self.proj(text)


def replace_cls(tokens: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    """Return ``tokens`` (``P x T x W``) with position 0 replaced by ``cls`` (``P x W``).

    Out of place, so the shared tokens it may be called on stay intact and autograd is happy.
    """
    return torch.cat([cls.unsqueeze(1).to(tokens.dtype), tokens[:, 1:]], dim=1)
