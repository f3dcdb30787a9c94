"""ClsCLIP: a frozen CLIP ViT navigated by the text [CLS] token, and a light decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clsclip.model.backbone import ClipBackbone
from clsclip.model.base import SegmentationModel, Tokenizer
from clsclip.model.decoder import SegmentationDecoder
from clsclip.model.navigation import TextNavigator, replace_cls
from clsclip.model.prompts import combine_prompts


class ClsClipModel(SegmentationModel):
    """The ClsCLIP network (arXiv 2304.06212).

    Blocks before the first injection layer do not depend on the class, so they run once per
    image (`encode_shared`); every later block runs once per (image, class) pair
    (`decode_pairs`). Build it with `clsclip.model.builder.build_model`.
    """

    def __init__(
        self,
        *,
        backbone: ClipBackbone,
        navigator: TextNavigator | None,
        decoder: SegmentationDecoder,
        tokenizer: Tokenizer,
        prompt_templates: Sequence[str],
        injection_layers: Sequence[int],
        text_prior: bool,
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
        class_token: bool = False,
    ) -> None:
        super().__init__()
        if (bool(injection_layers) or class_token) != (navigator is not None):
            raise ValueError(
                "a navigator is needed exactly when injection_layers is non-empty or the class "
                "enters the decoder as a token"
            )
        if class_token and injection_layers:
            raise ValueError("class_token is the no-navigation baseline: injection_layers=()")
        bad = [i for i in injection_layers if not 0 <= i < backbone.depth]
        if bad:
            raise ValueError(
                f"injection_layers {bad} are out of range: the backbone has {backbone.depth} "
                f"blocks (0 .. {backbone.depth - 1})"
            )
        self.backbone = backbone
        self.navigator = navigator
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.prompt_templates = tuple(prompt_templates)
        self.injection_layers = tuple(sorted(injection_layers))
        self.text_prior = text_prior
        self.class_token = class_token
        self.image_mean = image_mean
        self.image_std = image_std
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    @property
    def first_class_block(self) -> int:
        """Index of the first block that depends on the class (``depth`` when none does)."""
        return self.injection_layers[0] if self.injection_layers else self.backbone.depth

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Text [CLS] vectors of class names: ``K x embed_dim``, unit L2 norm.

        Each name goes through every prompt template; the unit-normalised vectors of its prompts
        are averaged and normalised again (CLIP's prompt ensembling).
        """
        return combine_prompts(self.encode_prompts(names), normalize=True)

    def encode_shared(self, pixels: torch.Tensor) -> torch.Tensor:
        """The class-independent part: ``B x 3 x S x S`` -> tokens ``B x (1 + h*w) x width``."""
        tokens = self.backbone.embed(pixels)
        return self.backbone.run_blocks(tokens, 0, self.first_class_block)

    def decode_pairs(
        self, shared: torch.Tensor, text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """The class-dependent part, one row per (image, class) pair.

        Args:
            shared: ``P x (1 + h*w) x width`` outputs of `encode_shared`.
            text: ``P x embed_dim`` class vectors from `encode_class_names`.
            grid: the patch grid ``(h, w)``.

        Returns:
            Foreground logits ``P x 1 x h x w``.
        """
        if shared.shape[0] != text.shape[0]:
            raise ValueError(f"{shared.shape[0]} token rows but {text.shape[0]} text rows")
        hook, token = None, None
        if self.class_token and self.navigator is not None:
            token = self.navigator(text.to(shared.dtype))
        elif self.navigator is not None:
            cls = self.navigator(text.to(shared.dtype))
            layers = set(self.injection_layers)

            def hook(index: int, tokens: torch.Tensor) -> torch.Tensor:
                return replace_cls(tokens, cls) if index in layers else tokens

        x = self.backbone.run_blocks(shared, self.first_class_block, self.backbone.depth, hook)
        patches = x[:, 1:]
        extra = None
        if self.text_prior:
            projected = F.normalize(self.backbone.project_tokens(patches).float(), dim=-1)
            prior = torch.einsum("pne,pe->pn", projected, F.normalize(text.float(), dim=-1))
            extra = prior.reshape(prior.shape[0], 1, grid[0], grid[1])
        return self.decoder(patches, grid, extra, token)

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """One class per image (the training path).

        Args:
            pixels: ``B x 3 x S x S`` normalised images.
            text: ``B x embed_dim`` class vectors.

        Returns:
            Foreground logits ``B x 1 x h x w`` at 1 / patch size of the input.
        """
        grid = self.grid_for(pixels.shape[-1])
        return self.decode_pairs(self.encode_shared(pixels), text, grid)

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """`encode_shared`, as the pipeline's list of per-view tensors."""
        return [self.encode_shared(pixels)]

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """`decode_pairs` on rows of `encode_views`: logits ``P x h x w``."""
        return self.decode_pairs(shared[0], text, grid)[:, 0]
