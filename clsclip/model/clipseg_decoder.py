"""CLIPSeg's decoder (Lueddecke and Ecker, CVPR 2022): reduced activations, FiLM, small Transformer,
transposed-convolution head. Matches transformers' `CLIPSegDecoder` weight for weight."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clsclip.model.fused_block import feed_forward, packed_attention, relu_


class FusedEncoderLayer(nn.TransformerEncoderLayer):
    """`nn.TransformerEncoderLayer` (post-norm, batch first, ReLU, no masks) with a fused
    `scaled_dot_product_attention` and the feed-forward block run a few hundred tokens at a
    time: the same parameters and outputs.

    CLIPSeg's decoder runs once per prompt at a small width (64) with a wide hidden layer
    (2048): for 20 prompts the hidden activations are 80 MB, and passing them through memory
    (bias, ReLU) cost more than the matrix products. In chunks they stay in cache
    (`clsclip.model.fused_block.feed_forward`): 2.7x faster on a 2-core CPU, bit-identical.
    """

    def forward(
        self,
        src: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        src_key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        if src_mask is not None or src_key_padding_mask is not None or self.norm_first:
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)
        attention = self.self_attn
        qkv = F.linear(src, attention.in_proj_weight, attention.in_proj_bias)
        mixed = packed_attention(qkv, attention.num_heads)
        x = self.norm1(src + attention.out_proj(mixed))
        return self.norm2(x + self._feed_forward(x))

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self.linear2(F.relu(self.linear1(x)))
        return feed_forward(x, self.linear1, relu_, self.linear2)


class ClipSegDecoder(nn.Module):
    """Decodes CLIP activations of several blocks, conditioned on a text vector.

    Args:
        width: token width of the visual transformer.
        embed_dim: size of the conditioning (text) vector.
        num_extracted: number of extracted blocks (one reduction and one layer each).
        reduce_dim: width of the decoder.
        num_heads: attention heads of the decoder layers.
        intermediate_size: MLP width of the decoder layers (ReLU, post-norm).
        conditional_layer: index (in decoder order, deepest activation first) where FiLM applies.
        patch_size: the ViT patch size; the head upsamples by it.
        complex_head: the "refined" head (conv3x3, ReLU, two transposed convs of patch / 4)
            instead of one transposed conv of the patch size.
    """

    def __init__(
        self,
        *,
        width: int,
        embed_dim: int,
        num_extracted: int,
        reduce_dim: int,
        num_heads: int,
        intermediate_size: int,
        conditional_layer: int,
        patch_size: int,
        complex_head: bool,
    ) -> None:
        super().__init__()
        if not 0 <= conditional_layer < num_extracted:
            raise ValueError(
                f"conditional_layer {conditional_layer} must be below {num_extracted} (layers)"
            )
        self.conditional_layer = conditional_layer
        self.film_mul = nn.Linear(embed_dim, reduce_dim)
        self.film_add = nn.Linear(embed_dim, reduce_dim)
        self.reduces = nn.ModuleList(nn.Linear(width, reduce_dim) for _ in range(num_extracted))
        self.layers = nn.ModuleList(
            FusedEncoderLayer(
                d_model=reduce_dim,
                nhead=num_heads,
                dim_feedforward=intermediate_size,
                dropout=0.0,
                activation="relu",
                batch_first=True,
                norm_first=False,
            )
            for _ in range(num_extracted)
        )
        self.head: nn.Module
        if complex_head:
            if patch_size % 4:
                raise ValueError(
                    f"the refined head needs a patch size divisible by 4, got {patch_size}"
                )
            k = patch_size // 4
            self.head = nn.Sequential(
                nn.Conv2d(reduce_dim, reduce_dim, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(reduce_dim, reduce_dim // 2, kernel_size=k, stride=k),
                nn.ReLU(),
                nn.ConvTranspose2d(reduce_dim // 2, 1, kernel_size=k, stride=k),
            )
        else:
            self.head = nn.ConvTranspose2d(reduce_dim, 1, kernel_size=patch_size, stride=patch_size)

    def reduce(self, activations: list[torch.Tensor]) -> list[torch.Tensor]:
        """Class-independent part: ``B x T x width`` per extracted block (shallow first) ->
        ``B x T x reduce_dim`` each, deepest first (the decoder's order)."""
        return [reduce(x) for reduce, x in zip(self.reduces, activations[::-1], strict=True)]

    def forward(
        self, reduced: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Decode one class per row.

        Args:
            reduced: outputs of `reduce` for the rows, ``P x (1 + h*w) x reduce_dim`` each.
            text: ``P x embed_dim`` conditioning vectors.
            grid: the patch grid ``(h, w)``.

        Returns:
            Logits ``P x (h * patch) x (w * patch)``, at the input resolution.
        """
        output: torch.Tensor | None = None
        for i, (activation, layer) in enumerate(zip(reduced, self.layers, strict=True)):
            output = activation if output is None else activation + output
            if i == self.conditional_layer:
                output = self.film_mul(text)[:, None] * output + self.film_add(text)[:, None]
            output = layer(output)
        assert output is not None
        patches = output[:, 1:].transpose(1, 2).reshape(output.shape[0], -1, *grid)
        return self._run_head(patches)[:, 0]

    def _run_head(self, patches: torch.Tensor) -> torch.Tensor:
        """The head, with its transposed convolutions as matrix products.

        A transposed convolution whose stride equals its kernel writes one disjoint k x k block
        per input pixel: a matrix product ``C_in -> k*k*C_out`` per pixel. The refined head's two
        of them chain as two products on rows of pixels, and one permutation at the end lays the
        blocks out as an image: the same sums as ``nn.ConvTranspose2d`` in the same order (equal
        outputs), 3-4x faster on the CPU for 20 prompts.
        """
        head: Any = self.head
        if isinstance(head, nn.Sequential):
            conv, _, *rest = head
            x = F.relu(conv(patches))
            ups: list[Any] = rest[::2]
        else:
            x, ups = patches, [head]
        if not all(_is_unpatch(layer) for layer in ups):
            return head(patches)
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
        for i, layer in enumerate(ups):
            k = layer.kernel_size[0]
            weight = layer.weight.permute(0, 2, 3, 1).reshape(layer.in_channels, -1)
            if layer.bias is None:
                rows = rows @ weight
            else:
                rows = torch.addmm(layer.bias.repeat(k * k), rows, weight)
            rows = rows.view(-1, layer.out_channels)  # pixel rows, block offsets innermost
            if i + 1 < len(ups):
                rows = F.relu(rows)
        sizes = [layer.kernel_size[0] for layer in ups]
        out_channels = ups[-1].out_channels
        blocks = rows.view(
            batch, height, width, *[k for k in sizes for _ in range(2)], out_channels
        )
        depth = len(sizes)  # dims: b, i, j, (di, dj) per layer, channel
        order = [0, 3 + 2 * depth, 1, *range(3, 3 + 2 * depth, 2), 2, *range(4, 4 + 2 * depth, 2)]
        scale = math.prod(sizes)
        return blocks.permute(order).reshape(batch, out_channels, height * scale, width * scale)


def _is_unpatch(layer: nn.Module) -> bool:
    """A transposed convolution that maps each pixel to its own k x k block."""
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and layer.kernel_size[0] == layer.kernel_size[1] == layer.stride[0] == layer.stride[1]
        and layer.padding == (0, 0)
        and layer.output_padding == (0, 0)
        and layer.dilation == (1, 1)
        and layer.groups == 1
    )
