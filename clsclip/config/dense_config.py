"""Training-free dense CLIP (ClearCLIP, NACLIP): only the last visual block attends differently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from clsclip.checks import check_class_names, check_int, check_number
from clsclip.config.base import MAX_IMAGE_SIZE, ModelConfig

METHODS = ("clearclip", "naclip", "none")
"""``clearclip`` (Lan et al., ECCV 2024), ``naclip`` (Hajimiri et al., WACV 2025), or ``none``:
the backbone's own last block (plain CLIP patch tokens, a baseline and a check)."""

METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    # The references' settings: ClearCLIP's segmentor (logit scale 50, 448 px windows, stride
    # 224) and NACLIP's (logit scale 40, 224 px windows, stride 112, Gaussian std 5 patches).
    "clearclip": {"logit_scale": 50.0, "window_size": 448},
    "naclip": {"logit_scale": 40.0, "window_size": 224},
    "none": {"logit_scale": 50.0, "window_size": 224},
}

IMAGENET = "imagenet"
"""``prompt_templates=("imagenet",)`` stands for CLIP's 80 ImageNet templates (the references'),
expanded when the config is made, so the saved config lists them."""

DEFAULT_BACKGROUND = ("background", "sky", "wall", "floor", "ground", "grass", "road", "building")
"""Background prompts: queried with the classes, never reported. A pixel belongs to a class only
where the class beats the best of these (the references list such words as the background class
of PASCAL VOC)."""


@dataclass(frozen=True)
class DenseClipConfig(ModelConfig):
    """A frozen open_clip CLIP as a zero-shot segmenter, with no training (see
    docs/training-free.md). The image (letterboxed to ``image_size``) is covered by sliding
    windows; every window runs through the ViT once for all classes; each patch's feature is the
    last block's output under the method's attention, without residual or feed-forward.

    Class scores are a softmax over the queried classes (and background prompts), at
    ``logit_scale`` times the cosine similarity; see `clsclip.model.scores.dense_logits` for
    how they become per-class logits.

    Attributes:
        method: one of `METHODS`.
        window_size: side in pixels of a sliding window (None: the method's reference, 448 for
            ClearCLIP, 224 for NACLIP); a multiple of the patch size, at most ``image_size``
            (a smaller image is one window).
        window_stride: pixels between windows (None: half the window).
        logit_scale: the softmax temperature over cosine similarities (None: the method's, 50
            for ClearCLIP, 40 for NACLIP).
        gaussian_std: NACLIP's neighbourhood: the standard deviation, in patches, of the
            Gaussian added to the last block's attention logits.
        background_prompts: names queried beside the classes that no pixel is reported as;
            ``()`` for none (then every pixel goes to its most probable class, unless the
            threshold, a softmax probability, leaves it out).
    """

    MODEL_TYPE: ClassVar[str] = "clsclip-dense"
    FAMILY: ClassVar[str] = "training-free"

    image_size: int = 448
    method: str = "clearclip"
    window_size: int | None = None
    window_stride: int | None = None
    logit_scale: float | None = None
    gaussian_std: float = 5.0
    background_prompts: tuple[str, ...] = DEFAULT_BACKGROUND

    def __post_init__(self) -> None:
        if self.prompt_templates in ((IMAGENET,), [IMAGENET], IMAGENET):
            object.__setattr__(self, "prompt_templates", imagenet_templates())
        super().__post_init__()

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        for name in ("window_size", "window_stride"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, minimum=1, maximum=MAX_IMAGE_SIZE)
        if self.logit_scale is not None:
            check_number("logit_scale", self.logit_scale, maximum=1e4)
        check_number("gaussian_std", self.gaussian_std, maximum=1e3)
        if self.gaussian_std < MIN_GAUSSIAN_STD:
            raise ValueError(
                f"gaussian_std must be at least {MIN_GAUSSIAN_STD} patches, got "
                f"{self.gaussian_std!r} (a narrower neighbourhood is one patch, and its "
                "exp(-d^2 / 2 std^2) underflows)"
            )
        if self.stride > self.window:
            raise ValueError(
                f"window_stride {self.stride} px is larger than the window {self.window} px: "
                "the cells between windows would be seen by none"
            )
        if not isinstance(self.background_prompts, tuple):
            raise TypeError(
                f"background_prompts must be a tuple of str, got {self.background_prompts!r}"
            )
        if self.background_prompts:
            check_class_names(list(self.background_prompts))

    @property
    def window(self) -> int:
        """The window side in pixels (the method's default when unset), at most the input."""
        size = self.window_size or int(METHOD_DEFAULTS[self.method]["window_size"])
        return min(size, self.image_size)

    @property
    def stride(self) -> int:
        """Pixels between windows."""
        return self.window_stride or max(1, self.window // 2)

    @property
    def scale(self) -> float:
        """The logit scale (the method's default when unset)."""
        return float(self.logit_scale or METHOD_DEFAULTS[self.method]["logit_scale"])


MIN_GAUSSIAN_STD = 0.1
"""NACLIP's neighbourhood in patches: below this it is the patch alone (exp(-1 / 0.02) = 2e-22)."""


def imagenet_templates() -> tuple[str, ...]:
    """CLIP's 80 prompt templates for ImageNet (Radford et al., 2021), as open_clip ships them."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)
