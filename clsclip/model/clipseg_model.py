"""CLIPSeg on clsclip's backbone: one visual pass per image serves every prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clsclip.model.backbone import ClipBackbone
from clsclip.model.base import SegmentationModel, Tokenizer
from clsclip.model.clipseg_decoder import ClipSegDecoder
from clsclip.model.prompts import combine_prompts


class ClipSegModel(SegmentationModel):
    """CLIPSeg (Lueddecke and Ecker, CVPR 2022) with the text condition.

    The class enters only in the decoder, so the visual blocks run once per image, and only up
    to the deepest extracted block. Build it with `clsclip.model.build_model` from a
    `ClipSegConfig`, or convert a transformers checkpoint with `from_pretrained`.
    """

    def __init__(
        self,
        *,
        backbone: ClipBackbone,
        decoder: ClipSegDecoder,
        tokenizer: Tokenizer,
        prompt_templates: Sequence[str],
        extract_layers: Sequence[int],
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        bad = [i for i in extract_layers if not 0 <= i < backbone.depth]
        if bad:
            raise ValueError(
                f"extract_layers {bad} are out of range: the backbone has {backbone.depth} blocks"
            )
        self.backbone = backbone
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.prompt_templates = tuple(prompt_templates)
        self.extract_layers = tuple(extract_layers)
        self.image_mean = image_mean
        self.image_std = image_std
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """CLIP text features (projected, not normalised, as CLIPSeg's FiLM expects),
        averaged over the prompt templates: ``K x embed_dim``."""
        return combine_prompts(self.encode_prompts(names), normalize=False)

    def encode_shared(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Visual blocks up to the deepest extracted one, once per image, reduced by the decoder:
        ``B x 3 x S x S`` -> per extracted block (deepest first) ``B x (1 + h*w) x reduce_dim``."""
        x = self.backbone.embed(pixels)
        activations, start = [], 0
        for layer in sorted(self.extract_layers):
            x = self.backbone.run_blocks(x, start, layer + 1)
            activations.append(x)
            start = layer + 1
        order = [sorted(self.extract_layers).index(i) for i in self.extract_layers]
        return self.decoder.reduce([activations[i] for i in order])

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """`encode_shared`: the reduced activations are the per-view work."""
        return self.encode_shared(pixels)

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """FiLM, decoder layers and head per row: logits ``P x S x S``."""
        return self.decoder(shared, text.to(shared[0].dtype), grid)

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """One prompt per image: ``B x 3 x S x S``, ``B x embed_dim`` -> logits ``B x S x S``."""
        rows = torch.arange(pixels.shape[0], device=pixels.device)
        pairs = torch.stack([rows, rows], dim=1)
        return self.predict_pairs(pixels, text, pairs, chunk_size=max(1, pixels.shape[0]))
