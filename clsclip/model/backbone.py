"""The frozen CLIP backbone: open_clip's ViT image tower run block by block, and its text tower.

Both towers' blocks run through `clsclip.model.fused_block.run_block` (fused attention, a
cache-sized feed-forward pass), which computes open_clip's function with open_clip's parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clsclip.model.fused_block import is_plain_block, run_block, run_causal_with_shared_prefix

logger = logging.getLogger(__name__)

# Called right before visual block `index` with the tokens `B x (1 + N) x W`; returns new tokens.
BlockHook = Callable[[int, torch.Tensor], torch.Tensor]


def interpolate_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ViT position embedding to a new patch grid.

    Args:
        pos_embed: ``(1 + G0*G0) x W``, the [CLS] position first, then a square ``G0 x G0`` grid.
        grid: the new ``(rows, cols)``.

    Returns:
        ``(1 + rows*cols) x W``. The [CLS] position is kept as is; the grid part is resized
        bicubically (align_corners=False), as timm's ``resample_abs_pos_embed`` does.
    """
    num_patches = pos_embed.shape[0] - 1
    old = round(num_patches**0.5)
    if old * old != num_patches:
        raise ValueError(f"position embedding of {num_patches} patches is not a square grid")
    if (old, old) == tuple(grid):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:1], pos_embed[1:]
    width = pos_embed.shape[1]
    patch_pos = patch_pos.reshape(1, old, old, width).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(patch_pos.float(), size=grid, mode="bicubic", align_corners=False).to(
        pos_embed.dtype
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], width)
    return torch.cat([cls_pos, patch_pos], dim=0)


def reference_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The training-free references' position embedding for a patch grid (ClearCLIP's and
    NACLIP's ``interpolate_pos_encoding``): the native grid as it is, else bicubic
    (align_corners=False) with ``scale_factor = ((rows + 0.1) / G0, (cols + 0.1) / G0)`` and
    ``recompute_scale_factor=False``, so the sampling positions follow that scale, not
    ``G0 / rows`` as `interpolate_pos_embed`'s ``size=`` does."""
    num_patches = int(pos_embed.shape[0]) - 1  # int: a constant when traced
    old = round(num_patches**0.5)
    if old * old != num_patches:
        raise ValueError(f"position embedding of {num_patches} patches is not a square grid")
    if (old, old) == tuple(grid):
        return pos_embed
    width = int(pos_embed.shape[1])
    patch_pos = pos_embed[1:].reshape(1, old, old, width).permute(0, 3, 1, 2)
    scale = ((grid[0] + 0.1) / old, (grid[1] + 0.1) / old)
    if patch_pos.dtype in (torch.float16, torch.bfloat16):
        patch_pos = patch_pos.float()
    patch_pos = F.interpolate(patch_pos, scale_factor=scale, mode="bicubic",
                              align_corners=False, recompute_scale_factor=False)  # fmt: skip
    patch_pos = patch_pos.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(-1, width)
    return torch.cat([pos_embed[:1], patch_pos], dim=0)


def _shared_prefix(token_ids: torch.Tensor, eot: torch.Tensor) -> int:
    """How many leading tokens all rows share, stopping before the first end-of-text token
    (every pooled token stays outside the prefix)."""
    same = (token_ids == token_ids[:1]).all(dim=0).int().cumprod(dim=0)
    return min(int(same.sum()), int(eot.min()))


class ClipBackbone(nn.Module):
    """An open_clip CLIP model, exposed block by block.

    The image tower must be open_clip's own ``VisionTransformer`` with [CLS] pooling; sizes
    (width, depth, patch size, embedding dim) are read from it, never assumed.
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        from open_clip.transformer import VisionTransformer

        visual = getattr(clip, "visual", None)
        if not isinstance(visual, VisionTransformer):
            raise ValueError(
                "clsclip needs an open_clip model whose image tower is open_clip's "
                f"VisionTransformer, got {type(visual).__name__} (timm and ResNet towers are not "
                "supported)"
            )
        if visual.attn_pool is not None or visual.pool_type != "tok":
            raise ValueError(
                "clsclip needs a ViT pooled by its [CLS] token (pool_type='tok', no attentional "
                f"pooling); this backbone has pool_type={visual.pool_type!r}"
            )
        if visual.proj is None:
            raise ValueError("the backbone's ViT has no output projection (visual.proj is None)")
        self.clip: Any = clip

    @property
    def visual(self) -> Any:
        return self.clip.visual

    @property
    def width(self) -> int:
        """Token width of the image tower."""
        return int(self.visual.class_embedding.shape[0])

    @property
    def depth(self) -> int:
        """Number of visual transformer blocks."""
        return len(self.visual.transformer.resblocks)

    @property
    def patch_size(self) -> int:
        size = self.visual.patch_size
        if size[0] != size[1]:
            raise ValueError(f"non-square patches {size} are not supported")
        return int(size[0])

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text space (the text [CLS] vector)."""
        return int(self.visual.proj.shape[1])

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    def embed(self, pixels: torch.Tensor, *, positions: str = "resize") -> torch.Tensor:
        """Patch embedding, [CLS], interpolated position embedding and ``ln_pre``.

        Args:
            pixels: ``B x 3 x H x W`` normalised images; H and W multiples of the patch size
                (the convolution drops a remainder).
            positions: ``"resize"`` (`interpolate_pos_embed`, what ClsCLIP was trained with)
                or ``"reference"`` (`reference_pos_embed`, the training-free references').

        Returns:
            Tokens ``B x (1 + h*w) x width`` with h = H / patch, w = W / patch; [CLS] first.
        """
        visual = self.visual
        x = visual.conv1(pixels)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        resize = reference_pos_embed if positions == "reference" else interpolate_pos_embed
        x = x + resize(visual.positional_embedding, grid).to(x.dtype)
        return visual.ln_pre(x)

    def run_blocks(
        self,
        tokens: torch.Tensor,
        start: int,
        stop: int,
        before_block: BlockHook | None = None,
    ) -> torch.Tensor:
        """Run visual blocks ``start .. stop - 1`` on batch-first tokens ``B x T x width``.

        ``before_block(i, tokens)``, when given, may replace the tokens right before block i.
        """
        batch_first = getattr(self.visual.transformer, "batch_first", True)
        x = tokens
        for index in range(start, stop):
            if before_block is not None:
                x = before_block(index, x)
            block = self.blocks[index]
            x = run_block(block, x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
        return x

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map visual tokens ``B x N x width`` into the joint space: ``ln_post`` then ``proj``.

        Returns ``B x N x embed_dim``.
        """
        return self.visual.ln_post(tokens) @ self.visual.proj

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """CLIP's text [CLS]: ``K x L`` token ids -> ``K x embed_dim``, not normalised.

        For open_clip's own text tower (causal attention, pooled at the end-of-text token, the
        largest id) the sequences are cut after the last end-of-text token: under a causal mask
        the pooled token never sees the padding, so the result is the same and short prompts
        cost a fraction of the 77-token context. For the same reason tokens shared by every row
        (the start token and a template's words before the name) run once
        (`run_causal_with_shared_prefix`). Other text towers run as open_clip runs them.
        """
        clip = self.clip
        if getattr(clip, "text_pool_type", None) != "argmax" or not hasattr(clip, "attn_mask"):
            return clip.encode_text(token_ids, normalize=False)
        eot = token_ids.argmax(dim=-1)
        length = int(eot.max()) + 1
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(token_ids[:, :length]).to(cast_dtype)
        x = x + clip.positional_embedding[:length].to(cast_dtype)
        mask = clip.attn_mask[:length, :length]
        transformer = clip.transformer
        rows = torch.arange(x.shape[0], device=x.device)
        prefix = _shared_prefix(token_ids[:, :length], eot)
        fused = getattr(transformer, "batch_first", True) and not (
            transformer.grad_checkpointing and torch.is_grad_enabled()
        )
        if fused and prefix > 1 and all(is_plain_block(b) for b in transformer.resblocks):
            x = run_causal_with_shared_prefix(transformer.resblocks, x, mask, prefix)
            eot = eot - prefix
        elif fused:
            for block in transformer.resblocks:
                x = run_block(block, x, attn_mask=mask)
        else:
            x = transformer(x, attn_mask=mask)
        x = clip.ln_final(x[rows, eot])
        projection = clip.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection
