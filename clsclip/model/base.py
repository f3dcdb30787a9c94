"""What every segmentation network in clsclip offers the pipeline (`Segmenter`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from clsclip.model.backbone import ClipBackbone


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

    def tokenize_prompts(self, names: Sequence[str]) -> torch.Tensor:
        """Token ids of every (name, template) prompt, name-major: ``(K * T) x context``.

        Raises `ValueError` naming the class when a prompt does not fit the text encoder's
        context: the tokenizer would cut it silently, and two names that differ only past the
        cut would get the same vector.
        """
        prompts = [t.format(n) for n in names for t in self.prompt_templates]
        context = getattr(self.tokenizer, "context_length", None)
        if not isinstance(context, int):
            return self.tokenizer(prompts)
        try:  # one position more than the encoder reads shows whether a prompt was cut
            ids = self.tokenizer(prompts, context_length=context + 1)
        except TypeError:
            return self.tokenizer(prompts)
        pad = getattr(getattr(self.tokenizer, "tokenizer", None), "pad_token_id", None) or 0
        cut = torch.nonzero(ids[:, context] != pad)
        if cut.numel():
            row = int(cut[0, 0])
            name = names[row // len(self.prompt_templates)]
            raise ValueError(
                f"class name {name[:60]!r}{'...' if len(name) > 60 else ''} is too long: the "
                f"prompt {self.prompt_templates[row % len(self.prompt_templates)]!r} with it "
                f"is over the text encoder's {context} tokens; shorten it"
            )
        return ids[:, :context]

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
        """Chosen (view, class) pairs, each view's class-independent work run once.

        Args:
            pixels: ``V x 3 x S x S`` normalised views (whole images and zoomed crops).
            text: ``K x embed_dim`` class vectors.
            pairs: ``P x 2`` int64 rows ``(view index, class index)``.
            chunk_size: views per pass through the shared work, and pairs per pass through
                the class-dependent one; peak memory grows with it, not with K.

        Returns:
            Logits ``P x h' x w'`` in the order of ``pairs``.
        """
        grid = self.grid_for(pixels.shape[-1])
        chunks = [self.encode_views(chunk) for chunk in pixels.split(chunk_size)]
        shared = [torch.cat(parts) for parts in zip(*chunks, strict=True)]
        pairs = pairs.to(pixels.device)
        outputs = []
        for start in range(0, pairs.shape[0], chunk_size):
            chunk = pairs[start : start + chunk_size]
            rows = [x[chunk[:, 0]] for x in shared]
            outputs.append(self.decode_rows(rows, text[chunk[:, 1]], grid))
        return torch.cat(outputs)

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        """Every class for every image: ``B x 3 x S x S``, ``K x E`` -> ``B x K x h' x w'``."""
        num_images, num_classes = pixels.shape[0], text.shape[0]
        pairs = torch.cartesian_prod(
            torch.arange(num_images, device=pixels.device),
            torch.arange(num_classes, device=pixels.device),
        ).reshape(-1, 2)
        logits = self.predict_pairs(pixels, text, pairs, chunk_size=chunk_size)
        return logits.reshape(num_images, num_classes, *logits.shape[-2:])
