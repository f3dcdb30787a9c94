"""The last visual block of the training-free methods: another attention, no residual, no MLP.

Both methods (written here from their papers' formulas) keep the block's own parameters and
drop its residual connection and feed-forward, so the output of the last block is only
``out_proj(attention)`` over ``ln_1`` of its input:

- ClearCLIP (Lan et al., "ClearCLIP: Decomposing CLIP Representations for Dense
  Vision-Language Inference", ECCV 2024): query-query attention,
  ``softmax(q q^T / sqrt(d)) v``.
- NACLIP (Hajimiri et al., "Pay Attention to Your Neighbours: Training-Free Open-Vocabulary
  Semantic Segmentation", WACV 2025): key-key attention with a Gaussian neighbourhood added to
  the logits, ``softmax(k k^T / sqrt(d) + Omega) v``, where ``Omega[i, j] = exp(-|p_i - p_j|^2 /
  (2 sigma^2))`` for patches at grid positions ``p_i``, ``p_j`` and 0 on the [CLS] row and
  column.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clsclip.model.fused_block import merge_heads, split_heads


def neighbourhood_bias(
    grid: tuple[int, int], std: float, *, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """NACLIP's ``Omega``: ``(1 + h*w) x (1 + h*w)``, the Gaussian of the distance between two
    patches of a row-major ``h x w`` grid (in patches), 0 where the [CLS] token is involved."""
    rows, cols = grid
    y, x = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64),
        torch.arange(cols, dtype=torch.float64),
        indexing="ij",
    )
    positions = torch.stack([y.reshape(-1), x.reshape(-1)], dim=1)
    distance2 = (positions[:, None, :] - positions[None, :, :]).square().sum(dim=-1)
    patches = torch.exp(-distance2 / (2.0 * std * std))
    bias = torch.zeros(1 + rows * cols, 1 + rows * cols, dtype=torch.float64)
    bias[1:, 1:] = patches
    return bias.to(device=device, dtype=dtype)


def dense_last_block(
    block: Any, x: torch.Tensor, method: str, grid: tuple[int, int], gaussian_std: float
) -> torch.Tensor:
    """The last block of an open_clip ViT under a training-free method.

    Args:
        block: the ViT's last ``ResidualAttentionBlock`` (its parameters are used as they are).
        x: ``B x (1 + h*w) x W`` tokens entering it, [CLS] first.
        method: ``"clearclip"`` or ``"naclip"``.
        grid: the patch grid ``(h, w)`` of the tokens.
        gaussian_std: NACLIP's neighbourhood width, in patches.

    Returns:
        ``B x (1 + h*w) x W``: ``out_proj(attention)``, with no residual and no MLP. A
        LayerScale (``ls_1``, on ViTs that have one) is left out, as the references' last block
        leaves it.
    """
    attention = block.attn
    heads = int(getattr(attention, "num_heads"))  # noqa: B009 (nn.Module attributes are untyped)
    qkv = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias)
    q, k, v = split_heads(qkv, heads)
    if method == "clearclip":
        mixed = F.scaled_dot_product_attention(q, q, v)
    elif method == "naclip":
        bias = neighbourhood_bias(grid, gaussian_std, dtype=x.dtype, device=x.device)
        mixed = F.scaled_dot_product_attention(k, k, v, attn_mask=bias)
    else:
        raise ValueError(f"unknown training-free method {method!r}; known: clearclip, naclip")
    return attention.out_proj(merge_heads(mixed))
