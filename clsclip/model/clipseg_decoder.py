"""CLIPSeg's decoder (Lueddecke and Ecker, CVPR 2022): reduced activations, FiLM, small Transformer,
transposed-convolution head. Matches transformers' `CLIPSegDecoder` weight for weight."""

from __future__ import annotations

import torch
from torch import nn


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
            nn.TransformerEncoderLayer(
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
        return self.head(patches)[:, 0]
