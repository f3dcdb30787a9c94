"""The lightweight decoder: 2 Transformer layers on the patch tokens, then a small conv head."""

from __future__ import annotations

import torch
from torch import nn


class SegmentationDecoder(nn.Module):
    """Turns the last block's patch tokens into a foreground logit per patch.

    Args:
        width: token width of the visual transformer (the decoder runs at this width).
        num_layers: Transformer layers (pre-norm, GELU).
        num_heads: attention heads; must divide ``width``.
        mlp_ratio: MLP hidden width over ``width``.
        channels: output channels of the successive 3x3 convolutions of the head.
        extra_channels: channels concatenated to the token map before the head (the text prior).
    """

    def __init__(
        self,
        *,
        width: int,
        num_layers: int,
        num_heads: int,
        mlp_ratio: float,
        channels: tuple[int, ...],
        extra_channels: int = 0,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"decoder heads ({num_heads}) must divide the visual width ({width})")
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=width,
                nhead=num_heads,
                dim_feedforward=int(width * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.extra_channels = extra_channels
        head: list[nn.Module] = []
        in_channels = width + extra_channels
        for out_channels in channels:
            head += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(inplace=True)]
            in_channels = out_channels
        head.append(nn.Conv2d(in_channels, 1, 1))
        self.head = nn.Sequential(*head)

    def forward(
        self,
        patch_tokens: torch.Tensor,
        grid: tuple[int, int],
        extra: torch.Tensor | None = None,
        token: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode patch tokens.

        Args:
            patch_tokens: ``P x (h*w) x width``, row-major over the patch grid.
            grid: ``(h, w)``.
            extra: ``P x extra_channels x h x w`` maps to concatenate (the text prior), or None.
            token: ``P x width``, a token the Transformer layers attend to and that is dropped
                after them (the class, in the no-navigation baseline), or None.

        Returns:
            Foreground logits ``P x 1 x h x w``.
        """
        x = patch_tokens
        if token is not None:
            x = torch.cat([token.unsqueeze(1).to(x.dtype), x], dim=1)
        for layer in self.layers:
            x = layer(x)
        if token is not None:
            x = x[:, 1:]
        x = self.norm(x)
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])
        if self.extra_channels:
            if extra is None or extra.shape[1] != self.extra_channels:
                raise ValueError(f"decoder expects {self.extra_channels} extra input channels")
            x = torch.cat([x, extra.to(x.dtype)], dim=1)
        return self.head(x)
