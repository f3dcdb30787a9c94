"""ClsCLIP's hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clsclip.checks import check_int
from clsclip.config.base import ModelConfig


@dataclass(frozen=True)
class ClsClipConfig(ModelConfig):
    """Hyperparameters of a ClsCLIP model (see `ModelConfig` for the shared fields).

    Attributes:
        injection_layers: 0-indexed visual blocks right before which the [CLS] token is replaced by
            the projected text vector. ``()`` turns navigation off (needs ``text_prior``).
        text_prior: add a decoder input channel with the cosine similarity between the class text
            vector and the last block's patch tokens (through ``ln_post`` and the projection).
        decoder_layers: Transformer layers of the decoder, at the visual width.
        decoder_heads: attention heads of the decoder; ``None`` gives ``width // 64`` (at least 1).
        decoder_mlp_ratio: hidden width of the decoder's MLPs over the visual width.
        decoder_channels: output channels of the 3x3 convolutions of the head.
    """

    MODEL_TYPE: ClassVar[str] = "clsclip"

    injection_layers: tuple[int, ...] = (2, 3, 4)
    text_prior: bool = False
    decoder_layers: int = 2
    decoder_heads: int | None = None
    decoder_mlp_ratio: float = 4.0
    decoder_channels: tuple[int, ...] = (256, 128, 64)

    def _validate(self) -> None:
        if not isinstance(self.injection_layers, tuple):
            raise TypeError(
                f"injection_layers must be a tuple of ints, got {self.injection_layers!r}"
            )
        for layer in self.injection_layers:
            check_int("injection_layers entry", layer, minimum=0)
        if len(set(self.injection_layers)) != len(self.injection_layers):
            raise ValueError(f"injection_layers has duplicates: {self.injection_layers}")
        if not isinstance(self.text_prior, bool):
            raise TypeError(f"text_prior must be a bool, got {self.text_prior!r}")
        if not self.injection_layers and not self.text_prior:
            raise ValueError(
                "injection_layers=() with text_prior=False gives a model that cannot see the "
                "class: the [CLS] injection is its only path for the text. Set injection_layers "
                "(the paper's (2, 3, 4)) or text_prior=True for the no-navigation baseline."
            )
        check_int("decoder_layers", self.decoder_layers, minimum=0)
        if self.decoder_heads is not None:
            check_int("decoder_heads", self.decoder_heads, minimum=1)
        if not isinstance(self.decoder_mlp_ratio, (int, float)) or self.decoder_mlp_ratio <= 0:
            raise ValueError(f"decoder_mlp_ratio must be positive, got {self.decoder_mlp_ratio!r}")
        if not self.decoder_channels:
            raise ValueError("decoder_channels needs at least one entry")
        for channels in self.decoder_channels:
            check_int("decoder_channels entry", channels, minimum=1)
