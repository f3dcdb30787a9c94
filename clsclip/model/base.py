"""What every segmentation network in clsclip offers the pipeline (`Segmenter`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from clsclip.model.backbone import ClipBackbone
from clsclip.model.prompts import tokenize_prompts
from clsclip.model.scores import ScoringRule

Tokenizer = Callable[[list[str]], torch.Tensor]


class SegmentationModel(nn.Module):
    """A text-conditioned segmentation network on a CLIP backbone.

    Subclasses implement `encode_class_names` and `predict_pairs`; the pipeline needs nothing
    else. ``image_mean`` / ``image_std`` are the RGB normalisation in [0, 1] units.
    """

    backbone: ClipBackbone
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    tokenizer: Callable[..., torch.Tensor]
    prompt_templates: tuple[str, ...]
    scoring: ScoringRule = ScoringRule("independent")
    """How raw scores become class logits (`clsclip.model.scores.ScoringRule`)."""

    def background_vectors(self, device: torch.device) -> torch.Tensor:
        """Vectors every view is also scored against when the classes compete (the background
        prompts): ``B x embed_dim``, none by default."""
        return torch.zeros(0, self.backbone.embed_dim, device=device)

    def tokenize_prompts(self, names: Sequence[str]) -> torch.Tensor:
        """Token ids of every (name, template) prompt (see `clsclip.model.prompts`)."""
        return tokenize_prompts(self.tokenizer, self.prompt_templates, names)

    def encode_prompts(self, names: Sequence[str]) -> torch.Tensor:
        """Text-tower outputs of every (name, template) prompt: ``K x T x embed_dim``.

        With several names and templates each template runs as one batch, so the words it puts
        before the name are shared by all of its rows (`ClipBackbone.encode_text`).
        """
        encode = self.backbone.encode_text
        ids = self.tokenize_prompts(names).to(self.backbone.visual.proj.device)
        templates = len(self.prompt_templates)
        if templates == 1 or len(names) == 1:
            return encode(ids).reshape(len(names), templates, -1)
        ids = ids.reshape(len(names), templates, -1)
        return torch.stack([encode(ids[:, t]) for t in range(templates)], dim=1)

    def grid_for(self, image_size: int) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of a square input of ``image_size`` pixels."""
        patch = self.backbone.patch_size
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        return image_size // patch, image_size // patch

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Class conditioning vectors, ``K x embed_dim``."""
        raise NotImplementedError

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The class-independent work for ``V x 3 x S x S`` views: tensors with V rows each."""
        raise NotImplementedError

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """The class-dependent work: rows of `encode_views` outputs and ``P x embed_dim`` class
        vectors -> logits ``P x h' x w'``."""
        raise NotImplementedError

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Chosen (view, row) pairs, each view's class-independent work run once (see
        `run_pairs`): raw scores ``P x h' x w'`` in the order of ``pairs`` (the logits of
        independent classes; `scoring` turns competing ones into logits)."""
        grid = self.grid_for(pixels.shape[-1])
        return run_pairs(
            self.encode_views, self.decode_rows, pixels, text, pairs, grid, chunk_size=chunk_size
        )

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Every row for every image: ``B x 3 x S x S``, ``K x E`` -> ``B x K x h' x w'`` raw
        scores (as `predict_pairs`)."""
        pairs = all_pairs(pixels.shape[0], text.shape[0], pixels.device)
        logits = self.predict_pairs(pixels, text, pairs, chunk_size=chunk_size)
        return logits.reshape(pixels.shape[0], text.shape[0], *logits.shape[-2:])


EncodeViews = Callable[[torch.Tensor], list[torch.Tensor]]
DecodeRows = Callable[[list[torch.Tensor], torch.Tensor, tuple[int, int]], torch.Tensor]


def run_pairs(
    encode_views: EncodeViews,
    decode_rows: DecodeRows,
    pixels: torch.Tensor,
    text: torch.Tensor,
    pairs: torch.Tensor,
    grid: tuple[int, int],
    *,
    chunk_size: int,
) -> torch.Tensor:
    """The one chunked loop over (view, class) pairs, for torch modules and ONNX graphs alike.

    Args:
        encode_views: the class-independent work of a chunk of views (tensors with V rows).
        decode_rows: the class-dependent work of rows of those tensors and their class vectors.
        pixels: ``V x 3 x S x S`` normalised views (whole images and zoomed crops).
        text: ``K x embed_dim`` class vectors.
        pairs: ``P x 2`` int64 rows ``(view index, class index)``.
        grid: the patch grid of the input.
        chunk_size: views per pass through the shared work, and pairs per pass through the
            class-dependent one; peak memory grows with it, not with K.

    Returns:
        Logits ``P x h' x w'`` in the order of ``pairs``.
    """
    chunks = [encode_views(chunk) for chunk in pixels.split(chunk_size)]
    shared = [torch.cat(parts) for parts in zip(*chunks, strict=True)]
    pairs = pairs.to(shared[0].device)
    text = text.to(shared[0].device)
    outputs = []
    for start in range(0, pairs.shape[0], chunk_size):
        chunk = pairs[start : start + chunk_size]
        rows = [x[chunk[:, 0]] for x in shared]
        outputs.append(decode_rows(rows, text[chunk[:, 1]], grid))
    return torch.cat(outputs)


def all_pairs(num_views: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """``(V * K) x 2`` rows ``(view, class)``, view-major: every class of every view."""
    return torch.cartesian_prod(
        torch.arange(num_views, device=device), torch.arange(num_classes, device=device)
    ).reshape(-1, 2)
