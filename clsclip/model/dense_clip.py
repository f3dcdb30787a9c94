"""A frozen CLIP as a zero-shot segmenter with no training: dense patch features from sliding
windows, compared with the class vectors (see `clsclip.config.DenseClipConfig`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clsclip.model.backbone import ClipBackbone
from clsclip.model.base import SegmentationModel, Tokenizer, run_pairs
from clsclip.model.dense_attention import dense_last_block
from clsclip.model.prompts import combine_prompts
from clsclip.model.scclip import scclip_tokens
from clsclip.model.scores import ScoringRule
from clsclip.model.windows import SlidingWindows


class DenseClipModel(SegmentationModel):
    """ClearCLIP or NACLIP on an open_clip ViT: one visual pass per window for all classes.

    Build it with `clsclip.model.build_model` from a `DenseClipConfig`. The references' inference
    (mmseg's ``slide_inference`` as ClearCLIP and NACLIP run it): `encode_views` gives the
    unit patch features of every sliding window of a view (any ``h x w``, square or not);
    `decode_rows` the cosine of each window's features with a class vector, upsampled
    (bilinear) to the window's pixels, averaged per pixel where windows overlap, times the
    logit scale: raw scores ``P x h x w`` on the view's pixels. The classes of an image and the
    background prompts compete (`scoring`, `clsclip.model.scores.ScoringRule`).
    """

    scoring = ScoringRule("softmax")

    def __init__(
        self,
        *,
        backbone: ClipBackbone,
        tokenizer: Tokenizer,
        prompt_templates: Sequence[str],
        method: str,
        window: int,
        stride: int,
        logit_scale: float,
        gaussian_std: float,
        background_prompts: Sequence[str],
        image_mean: tuple[float, float, float],
        image_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        patch = backbone.patch_size
        if 0 < window < patch:
            raise ValueError(f"window_size {window} px is smaller than one {patch} px patch")
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.prompt_templates = tuple(prompt_templates)
        self.method = method
        self.window, self.stride = window, stride
        self.logit_scale = logit_scale
        self.windows = SlidingWindows(window, stride, patch, method == "clearclip", logit_scale)
        self.gaussian_std = gaussian_std
        self.background_prompts = tuple(background_prompts)
        self.image_mean, self.image_std = image_mean, image_std
        self._background: dict[torch.device, torch.Tensor] = {}
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Unit text vectors ``K x embed_dim``: each prompt's vector normalised, averaged over
        the templates, normalised again (as the references build their query features)."""
        return combine_prompts(self.encode_prompts(names), normalize=True)

    def background_vectors(self, device: torch.device) -> torch.Tensor:
        """``B x embed_dim`` vectors of the background prompts (computed once per device)."""
        if not self.background_prompts:
            return torch.zeros(0, self.backbone.embed_dim, device=device)
        if device not in self._background:
            with torch.inference_mode():
                vectors = self.encode_class_names(self.background_prompts).to(device)
            self._background[device] = vectors
        return self._background[device]

    def window_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit patch features of windows: ``W x 3 x s x t`` -> ``W x (g*h) x embed_dim`` on the
        ``g x h`` patch grid (a remainder of less than a patch is dropped)."""
        backbone = self.backbone
        if self.method == "scclip":
            return F.normalize(scclip_tokens(backbone, pixels), dim=-1)
        tokens = backbone.embed(pixels, positions="reference")
        grid = (pixels.shape[-2] // backbone.patch_size, pixels.shape[-1] // backbone.patch_size)
        if self.method == "none":
            tokens = backbone.run_blocks(tokens, 0, backbone.depth)
        else:
            tokens = backbone.run_blocks(tokens, 0, backbone.depth - 1)
            last = backbone.blocks[backbone.depth - 1]
            tokens = dense_last_block(last, tokens, self.method, grid, self.gaussian_std)
        return F.normalize(backbone.project_tokens(tokens[:, 1:]), dim=-1)

    def window_cosines(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Cosines ``P x n x T`` of rows of window features ``P x n x T x E`` (unit) with class
        vectors ``P x E``."""
        unit = F.normalize(text.to(features.dtype), dim=-1)
        return torch.einsum("pnte,pe->pnt", features, unit)

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Unit features of the sliding windows of ``V x 3 x h x w`` views (one size): ``V x n x
        T x embed_dim`` for the n windows of `windows` (all of one size). The windows of all
        views go through the ViT together."""
        return [self.windows.encode(pixels, self.window_features)]

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Raw scores ``P x h x w`` on the view's pixels (``grid``: the view's ``(h, w)``): each
        window's cosines with the class vectors upsampled to its pixels (ClearCLIP: to the
        padded window, then cut), summed per pixel over the windows, divided by their count,
        times the logit scale (`clsclip.model.windows.SlidingWindows.merge`)."""
        return self.windows.merge(self.window_cosines(shared[0], text), grid)

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """As `SegmentationModel.predict_pairs`, with raw scores on the views' pixels."""
        grid = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        return run_pairs(
            self.encode_views, self.decode_rows, pixels, text, pairs, grid, chunk_size=chunk_size
        )

    def grid_for(self, image_size: int) -> tuple[int, int]:
        """The scores of a square ``image_size`` view are on its pixels."""
        return image_size, image_size
