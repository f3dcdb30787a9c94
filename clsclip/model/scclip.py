"""SC-CLIP's dense features (Bai et al., "Self-Calibrated CLIP for Training-Free Open-Vocabulary
Segmentation", TIP 2025; github SuleBai/SC-CLIP), written here from the paper and the reference
code's behaviour.

Everything comes from the checkpoint itself, per image (every step below is per window, batched
without mixing windows):

1. **Anomaly tokens**: after the second-to-last block, the patch tokens whose local outlier
   factor (LOF, Breunig et al. 2000; 30 neighbours) is above its 95th percentile are replaced by
   the mean of their non-anomalous 8 neighbours.
2. **Aggregation by intermediate similarity**: the cosine similarity of an intermediate block's
   (repaired) tokens, thresholded at 0.4 and row-normalised, averages the tokens before and after
   the last block.
3. **The last block's attention**: the mean of key-key attention and a softmax over that
   intermediate similarity (centred, times 3, below-mean entries masked), without residual or
   feed-forward; the [CLS] token is added back at 0.3.
4. **Multi-level fusion**: the sum of the middle blocks' outputs goes through the same attention
   and aggregation and is added.

The reference's layer choices are for a 12-block ViT-B (similarity of block 8 before and block 3
after the last block, fusion of blocks 3-9); `scclip_layers` scales them to any depth.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from clsclip.model.backbone import ClipBackbone
from clsclip.model.fused_block import merge_heads, split_heads

NEIGHBOURS = 30
"""LOF's neighbourhood (the reference's ``n_neighbors``)."""
CONTAMINATION = 0.05
"""Share of tokens LOF calls anomalous (the reference's ``contamination``)."""
SIMILARITY_FLOOR = 0.4
"""Similarities below it do not aggregate (the reference's ``beta``)."""
CLS_WEIGHT = 0.3
"""Weight of the [CLS] token added to the last block's output (the reference's ``res_cls``)."""
_REFERENCE_DEPTH = 12
_REFERENCE_LAYERS = (8, 3, 3, 10)  # pre-adjust, post-adjust, fusion start, fusion end (exclusive)


def scclip_layers(depth: int) -> tuple[int, int, int, int]:
    """The block outputs SC-CLIP reads on a ViT of ``depth`` blocks: ``(pre, post, start, end)``
    (0-based blocks; fusion over ``start <= i < end``), the reference's for 12 blocks, scaled
    in proportion (rounded) for others and kept below the last block."""
    if depth < 3:
        raise ValueError(f"SC-CLIP needs a ViT of at least 3 blocks, got {depth}")
    pre, post, start, end = (round(i * depth / _REFERENCE_DEPTH) for i in _REFERENCE_LAYERS)
    end = min(end, depth - 1)  # the outputs of the blocks before the last
    return min(pre, depth - 2), min(post, depth - 2), min(start, end - 1), end


def local_outlier_factor(x: torch.Tensor, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """LOF scores ``B x N`` of the rows of ``B x N x D`` (each batch element alone): Euclidean
    distances, the ``neighbours`` nearest other rows, reachability distance ``max(d(p, o),
    k-distance(o))``, local reachability density the inverse of its mean, and LOF the mean
    ratio of the neighbours' density to the row's (as ``sklearn.neighbors.LocalOutlierFactor``)."""
    count = x.shape[1]
    k = min(neighbours, count - 1)
    squares = (x * x).sum(dim=-1)
    # |a|^2 + |b|^2 - 2 a.b, as sklearn computes Euclidean distances on wide features (and an
    # ONNX graph can: torch.cdist has no ONNX export)
    distances = squares[:, :, None] + squares[:, None, :] - 2.0 * x @ x.transpose(1, 2)
    distances = distances.clamp(min=0.0).sqrt()
    eye = torch.eye(count, dtype=torch.bool, device=x.device)
    distances = distances.masked_fill(eye, float("inf"))  # a row is not its own neighbour
    near, index = distances.topk(k, dim=-1, largest=False)
    k_distance = near[..., -1]  # B x N
    reach = torch.maximum(near, torch.gather(k_distance, 1, index.flatten(1)).view_as(near))
    density = 1.0 / (reach.mean(dim=-1) + 1e-10)
    neighbour_density = torch.gather(density, 1, index.flatten(1)).view_as(near)
    return neighbour_density.mean(dim=-1) / density


def anomalies(scores: torch.Tensor, contamination: float = CONTAMINATION) -> torch.Tensor:
    """bool ``B x N``: the scores above their ``1 - contamination`` quantile (linear), per row:
    sklearn's ``fit_predict(...) == -1``."""
    cut = torch.quantile(scores.double(), 1.0 - contamination, dim=-1, keepdim=True)
    return scores.double() > cut


def repair(tokens: torch.Tensor, grid: tuple[int, int], bad: torch.Tensor) -> torch.Tensor:
    """Patch tokens ``B x N x D`` (row-major ``grid``) with each ``bad`` token replaced by the
    mean of its good 8 neighbours inside the grid (kept when it has none)."""
    rows, cols = grid
    maps = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, rows, cols)
    good = (~bad).to(tokens.dtype).view(-1, 1, rows, cols)
    kernel = torch.ones(1, 1, 3, 3, dtype=tokens.dtype, device=tokens.device)
    kernel[0, 0, 1, 1] = 0
    channels = maps.shape[1]
    total = F.conv2d(F.pad(maps * good, (1, 1, 1, 1)), kernel.expand(channels, 1, 3, 3),
                     groups=channels)  # fmt: skip
    count = F.conv2d(F.pad(good, (1, 1, 1, 1)), kernel)
    mean = total / count.clamp(min=1)
    replace = bad.view(-1, 1, rows, cols) & (count > 0)
    out = torch.where(replace, mean, maps)
    return out.reshape(tokens.shape[0], channels, -1).transpose(1, 2)


def similarity(tokens: torch.Tensor) -> torch.Tensor:
    """``B x N x N`` cosine similarity of the tokens ``B x N x D``."""
    unit = F.normalize(tokens, dim=-1)
    return unit @ unit.transpose(1, 2)


def aggregate(tokens: torch.Tensor, similarities: torch.Tensor) -> torch.Tensor:
    """Each token the weighted mean of the tokens whose similarity to it is at least
    `SIMILARITY_FLOOR` (weights: the similarities, over their sum plus 1e-6)."""
    weights = torch.where(similarities < SIMILARITY_FLOOR, 0.0, similarities)
    weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-6)
    return weights @ tokens


def calibrated_attention(block: Any, tokens: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The last block's attention over patch tokens ``B x N x W`` (no [CLS]): the mean of the
    key-key attention and ``softmax`` of the guide similarity ``B x N x N`` centred on its mean,
    times 3, with below-mean entries masked; ``out_proj`` of the mix, no residual, no MLP."""
    attention = block.attn
    heads = int(getattr(attention, "num_heads"))  # noqa: B009 (nn.Module attributes are untyped)
    qkv = F.linear(block.ln_1(tokens), attention.in_proj_weight, attention.in_proj_bias)
    _, k, v = split_heads(qkv, heads)
    centred = (guide - guide.mean(dim=(1, 2), keepdim=True)) * 3.0
    centred = centred.masked_fill(centred < 0.0, float("-inf"))
    weights = torch.softmax(centred, dim=-1)[:, None]  # the same for every head
    scale = k.shape[-1] ** -0.5
    weights = (weights + torch.softmax(k @ k.transpose(-1, -2) * scale, dim=-1)) / 2
    return attention.out_proj(merge_heads(weights @ v))


def scclip_tokens(backbone: ClipBackbone, pixels: torch.Tensor) -> torch.Tensor:
    """SC-CLIP's patch features ``B x N x embed_dim`` (not normalised) of windows ``B x 3 x H x
    W``, each window on its own (LOF, repair and similarities never mix windows)."""
    patch = backbone.patch_size
    grid = (pixels.shape[-2] // patch, pixels.shape[-1] // patch)
    depth = backbone.depth
    pre, post, start, end = scclip_layers(depth)
    x = backbone.embed(pixels, positions="reference")
    outputs = []
    for index in range(depth - 1):
        x = backbone.run_blocks(x, index, index + 1)
        outputs.append(x)
    cls = x[:, :1]
    patches = x[:, 1:]
    if patches.dtype in (torch.float16, torch.bfloat16):  # distances need more than 8 bits
        patches = patches.float()
    bad = anomalies(local_outlier_factor(patches))
    tokens = repair(x[:, 1:], grid, bad)
    guide = similarity(repair(outputs[pre][:, 1:], grid, bad))
    tokens = aggregate(tokens, guide)
    last = backbone.blocks[depth - 1]
    tokens = calibrated_attention(last, tokens, guide) + CLS_WEIGHT * cls
    after = similarity(outputs[post][:, 1:])
    tokens = aggregate(tokens, after)
    fused = torch.stack(outputs[start:end]).sum(dim=0)
    levels = calibrated_attention(last, fused[:, 1:], guide) + CLS_WEIGHT * fused[:, :1]
    tokens = tokens + aggregate(levels, after)
    return backbone.project_tokens(tokens)
