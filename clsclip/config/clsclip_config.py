"""ClsCLIP's hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clsclip.checks import check_int, check_number
from clsclip.config.base import MAX_HEADS, MAX_LAYERS, MAX_RATIO, MAX_WIDTH, ModelConfig


@dataclass(frozen=True)
class ClsClipConfig(ModelConfig):
    """Hyperparameters of a ClsCLIP model (see `ModelConfig` for the shared fields).

    Attributes:
        injection_layers: 0-indexed visual blocks right before which the [CLS] token is replaced by
            the projected text vector. ``()`` turns navigation off: the no-navigation baseline,
            where the whole ViT is shared by all classes and the class reaches only the decoder
            (as the projected text vector, an extra token of its Transformer; or, with
            ``text_prior``, as the cosine-prior channel).
        text_prior: add a decoder input channel with the cosine similarity between the class text
            vector and the last block's patch tokens (through ``ln_post`` and the projection).
        decoder_layers: Transformer layers of the decoder, at the visual width.
        decoder_heads: attention heads of the decoder; ``None`` gives ``width // 64`` (at least 1).
        decoder_mlp_ratio: hidden width of the decoder's MLPs over the visual width.
        decoder_channels: output channels of the 3x3 convolutions of the head.
    """

    MODEL_TYPE: ClassVar[str] = "clsclip"
    FAMILY: ClassVar[str] = "ClsCLIP (trained)"

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
            check_int("injection_layers entry", layer, minimum=0, maximum=MAX_LAYERS - 1)
        if len(set(self.injection_layers)) != len(self.injection_layers):
            raise ValueError(f"injection_layers has duplicates: {self.injection_layers}")
        if not isinstance(self.text_prior, bool):
            raise TypeError(f"text_prior must be a bool, got {self.text_prior!r}")
        check_int("decoder_layers", self.decoder_layers, minimum=0, maximum=MAX_LAYERS)
        if self.class_token and self.decoder_layers == 0:
            raise ValueError(
                "injection_layers=() with text_prior=False is the plain baseline, where the class "
                "reaches the decoder as an extra token: it needs decoder_layers >= 1"
            )
        if self.decoder_heads is not None:
            check_int("decoder_heads", self.decoder_heads, minimum=1, maximum=MAX_HEADS)
        check_number("decoder_mlp_ratio", self.decoder_mlp_ratio, maximum=MAX_RATIO)
        if not self.decoder_channels or len(self.decoder_channels) > MAX_LAYERS:
            raise ValueError(f"decoder_channels needs at least one entry and at most {MAX_LAYERS}")
        for channels in self.decoder_channels:
            check_int("decoder_channels entry", channels, minimum=1, maximum=MAX_WIDTH)

    @property
    def class_token(self) -> bool:
        """The plain baseline (no navigation, no text prior): the projected class vector is an
        extra token of the decoder's Transformer, the class's only way in."""
        return not self.injection_layers and not self.text_prior
