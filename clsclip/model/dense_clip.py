"""A frozen CLIP as a zero-shot segmenter with no training: dense patch features from sliding
windows, compared with the class vectors (see `clsclip.config.DenseClipConfig`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from clsclip.model.backbone import ClipBackbone
from clsclip.model.base import SegmentationModel, Tokenizer
from clsclip.model.dense_attention import dense_last_block
from clsclip.model.prompts import combine_prompts
from clsclip.model.scores import ScoringRule


def window_offsets(size: int, window: int, stride: int) -> list[int]:
    """Starts of the windows along one side of ``size`` pixels: every ``stride``, the last one
    moved back to end at the border (the references' rule); one window when it covers all."""
    if window >= size:
        return [0]
    count = (size - window + stride - 1) // stride + 1
    return sorted({min(i * stride, size - window) for i in range(count)})


class DenseClipModel(SegmentationModel):
    """ClearCLIP or NACLIP on an open_clip ViT: one visual pass per window for all classes.

    Build it with `clsclip.model.build_model` from a `DenseClipConfig`. `encode_views` gives
    each view's dense features on its patch grid (windows averaged where they overlap),
    `decode_rows` their scaled cosine similarity with class vectors; the classes of an image
    and the background prompts compete (`scoring`, `clsclip.model.scores.ScoringRule`).
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
        for name, value in (("window_size", window), ("window_stride", stride)):
            if value < patch or value % patch:
                raise ValueError(
                    f"{name} {value} px must be a multiple of the backbone's {patch} px patches "
                    "(and at least one patch)"
                )
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.prompt_templates = tuple(prompt_templates)
        self.method = method
        self.window, self.stride = window, stride
        self.logit_scale = logit_scale
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
        """Unit patch features of windows: ``W x 3 x s x s`` -> ``W x (g*g) x embed_dim``."""
        backbone = self.backbone
        tokens = backbone.embed(pixels)
        grid = (pixels.shape[-2] // backbone.patch_size, pixels.shape[-1] // backbone.patch_size)
        if self.method == "none":
            tokens = backbone.run_blocks(tokens, 0, backbone.depth)
        else:
            tokens = backbone.run_blocks(tokens, 0, backbone.depth - 1)
            last = backbone.blocks[backbone.depth - 1]
            tokens = dense_last_block(last, tokens, self.method, grid, self.gaussian_std)
        return F.normalize(backbone.project_tokens(tokens[:, 1:]), dim=-1)

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Dense features of ``V x 3 x S x S`` views: ``V x (G*G) x embed_dim`` on the view's
        patch grid (``G = S / patch``), each cell the mean of the unit features of the windows
        that cover it. The windows of all views go through the ViT together."""
        size, patch = pixels.shape[-1], self.backbone.patch_size
        window = min(self.window, size)
        offsets = window_offsets(size, window, self.stride)
        places = [(y, x) for y in offsets for x in offsets]
        windows = torch.cat([pixels[:, :, y : y + window, x : x + window] for y, x in places])
        features = self.window_features(windows)  # (len(places) * V) x g*g x E, place-major
        views, cells, side = pixels.shape[0], window // patch, size // patch
        maps = features.view(len(places), views, cells, cells, -1)
        total = features.new_zeros(views, side, side, features.shape[-1])
        count = features.new_zeros(side, side, 1)
        for i, (y, x) in enumerate(places):
            rows, cols = (
                slice(y // patch, y // patch + cells),
                slice(x // patch, x // patch + cells),
            )
            total[:, rows, cols] += maps[i]
            count[rows, cols] += 1
        return [(total / count).reshape(views, side * side, -1)]

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Scaled cosine similarity of rows of dense features and class vectors: ``P x h x w``
        (the features are means of unit vectors: their cosine is the mean of the windows')."""
        unit = F.normalize(text.to(shared[0].dtype), dim=-1)
        scores = torch.einsum("pne,pe->pn", shared[0], unit) * self.logit_scale
        return scores.reshape(scores.shape[0], grid[0], grid[1])
