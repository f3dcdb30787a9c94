"""Training-free dense CLIP (ClearCLIP, NACLIP): only the last visual block attends differently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clsclip.checks import check_class_names, check_int, check_number, check_threshold
from clsclip.config.base import MAX_IMAGE_SIZE, ModelConfig

METHODS = ("clearclip", "naclip", "scclip", "none")
"""``clearclip`` (Lan et al., ECCV 2024), ``naclip`` (Hajimiri et al., WACV 2025), ``scclip``
(Bai et al., TIP 2025), or ``none``: the backbone's own last block (plain CLIP patch tokens, a
baseline and a check)."""

METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    # The references' segmentors and their VOC configs: ClearCLIP (short side 448, logit scale
    # 50, 448 px windows every 224) and NACLIP (short side 336, logit scale 40, 224 px windows
    # every 112, Gaussian std 5 patches, PAMR on).
    "clearclip": {"image_size": 448, "logit_scale": 50.0, "window_size": 448, "stride": 224},
    "naclip": {"image_size": 336, "logit_scale": 40.0, "window_size": 224, "stride": 112},
    "scclip": {"image_size": 336, "logit_scale": 40.0, "window_size": 224, "stride": 112},
    "none": {"image_size": 448, "logit_scale": 50.0, "window_size": 224, "stride": 112},
}

IMAGENET = "imagenet"
"""``prompt_templates=("imagenet",)`` stands for CLIP's 80 ImageNet templates (the references'),
expanded when the config is made, so the saved config lists them; the default here."""

NACLIP_BACKGROUND = (
    "sky", "wall", "tree", "wood", "grass", "road", "sea", "river", "mountain", "sands", "desk",
    "bed", "building", "cloud", "lamp", "door", "window", "wardrobe", "ceiling", "shelf",
    "curtain", "stair", "floor", "hill", "rail", "fence",
)  # fmt: skip
"""NACLIP's background class of PASCAL VOC and COCO-Object (the first line of its
``cls_voc21.txt``): 26 names, each a query of its own."""

METHOD_BACKGROUND: dict[str, tuple[str, ...]] = {
    "clearclip": ("background",),
    "naclip": NACLIP_BACKGROUND,
    "scclip": NACLIP_BACKGROUND,  # SC-CLIP ships NACLIP's names files
    "none": ("background",),
}
"""The background prompts of each method by default: its reference's VOC-21 background."""

REFINEMENTS = ("none", "pamr")
"""``"pamr"``: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020) of the scores at
the image's resolution, as NACLIP runs it; ``"none"``."""

PRESETS: dict[str, dict[str, object]] = {
    # ClearCLIP's configs (mc-lan/ClearCLIP configs/cfg_*.py): short side 448; prob_thd as the
    # threshold; the background a dataset's names file lists.
    "clearclip-voc21": {"method": "clearclip", "threshold": 0.5,
                        "background_prompts": ("background",)},
    "clearclip-context60": {"method": "clearclip", "threshold": 0.15,
                            "background_prompts": ("background",)},
    "clearclip-object": {"method": "clearclip", "threshold": 0.4,
                         "background_prompts": ("background",)},
    "clearclip-voc20": {"method": "clearclip", "background_prompts": ()},
    "clearclip-context59": {"method": "clearclip", "background_prompts": ()},
    "clearclip-stuff": {"method": "clearclip", "background_prompts": ()},
    "clearclip-ade": {"method": "clearclip", "background_prompts": ()},
    "clearclip-cityscapes": {"method": "clearclip", "window_size": 224, "window_stride": 224,
                             "background_prompts": ()},
    # NACLIP's configs (sinahmr/NACLIP configs/cfg_*.py): short side 336 (560 for Cityscapes),
    # VOC in one pass (slide_crop=0), PAMR everywhere.
    "naclip-voc21": {"method": "naclip", "threshold": 0.1, "window_size": 0,
                     "background_prompts": NACLIP_BACKGROUND},
    "naclip-context60": {"method": "naclip", "threshold": 0.1,
                         "background_prompts": ("background",)},
    "naclip-object": {"method": "naclip", "threshold": 0.1,
                      "background_prompts": NACLIP_BACKGROUND},
    "naclip-voc20": {"method": "naclip", "window_size": 0, "background_prompts": ()},
    "naclip-context59": {"method": "naclip", "background_prompts": ()},
    "naclip-stuff": {"method": "naclip", "background_prompts": ()},
    "naclip-ade": {"method": "naclip", "background_prompts": ()},
    "naclip-cityscapes": {"method": "naclip", "image_size": 560, "background_prompts": ()},
    # SC-CLIP's configs (SuleBai/SC-CLIP configs/cfg_*.py): short side 336 (560 Cityscapes),
    # NACLIP's windows and names files, no PAMR; VOC21 drops classes under 10 % of the area.
    "scclip-voc21": {"method": "scclip", "threshold": 0.15, "logit_scale": 50.0,
                     "area_threshold": 0.1, "background_prompts": NACLIP_BACKGROUND},
    "scclip-context60": {"method": "scclip", "threshold": 0.15,
                         "background_prompts": ("background",)},
    "scclip-object": {"method": "scclip", "threshold": 0.35, "logit_scale": 55.0,
                      "background_prompts": NACLIP_BACKGROUND},
    "scclip-voc20": {"method": "scclip", "background_prompts": ()},
    "scclip-context59": {"method": "scclip", "background_prompts": ()},
    "scclip-stuff": {"method": "scclip", "background_prompts": ()},
    "scclip-ade": {"method": "scclip", "background_prompts": ()},
    "scclip-cityscapes": {"method": "scclip", "image_size": 560, "background_prompts": ()},
}  # fmt: skip
"""The references' evaluation settings by name (``DenseClipConfig.preset("naclip-voc21")``)."""


@dataclass(frozen=True)
class DenseClipConfig(ModelConfig):
    """A frozen open_clip CLIP as a zero-shot segmenter, with no training (see
    docs/training-free.md). By default every step is the method's reference inference: the
    image's short side resized to ``image_size`` (``resize_mode="short-side"``, no padding),
    sliding windows over it, each through the ViT once for all classes, each patch's feature the
    last block's output under the method's attention (no residual, no feed-forward); window
    scores upsampled to their pixels and averaged, then to the image; a softmax over the
    classes' and background prompts' scores (`clsclip.model.scores.ScoringRule`).

    Fields left at 0 or None take the method's reference value (`METHOD_DEFAULTS`), written
    into the config when it is made. `preset` gives the references' per-dataset settings.

    Attributes:
        method: one of `METHODS`.
        image_size: the short side in pixels after resizing (0: 448 for ClearCLIP, 336 for
            NACLIP; the long side at most 2048); with ``resize_mode="letterbox"`` the square.
        window_size: side in pixels of a sliding window (None: 448 for ClearCLIP, 224 for
            NACLIP; 0: the whole image in one pass). Any size: ClearCLIP pads a window to whole
            patches, NACLIP drops the remainder, as they do.
        window_stride: pixels between windows (None: 224 for ClearCLIP, 112 for NACLIP).
        logit_scale: the softmax temperature over cosine similarities (None: the method's, 50
            for ClearCLIP, 40 for NACLIP).
        gaussian_std: NACLIP's neighbourhood: the standard deviation, in patches, of the
            Gaussian added to the last block's attention logits.
        background_prompts: names queried beside the classes that no pixel is reported as
            (None: the method's VOC background, ClearCLIP's ``background``, NACLIP's 26 words);
            ``()`` for none.
        refine: ``"pamr"`` or ``"none"`` (None: PAMR for NACLIP, none otherwise).
        pamr_steps, pamr_dilations: PAMR's iterations and dilations (the references' 10 and
            (8, 16)).
        area_threshold: SC-CLIP's ``area_thd``: a class whose share of the pixels the label map
            gives to classes (before the threshold) is at most this is dropped from the image
            (None: none).
        threshold: the references' ``prob_thd``: a pixel is background where the largest
            class probability is below it (default 0).
        prompt_rule: ``"max"`` (default): each prompt of a class spec is a query of its own
            and the class scores the best of them, as the references treat a names file's
            synonyms.
    """

    MODEL_TYPE: ClassVar[str] = "clsclip-dense"
    FAMILY: ClassVar[str] = "training-free"

    image_size: int = 0
    prompt_templates: tuple[str, ...] = (IMAGENET,)
    threshold: float = 0.0
    resize_mode: str = "short-side"
    prompt_rule: str = "max"
    method: str = "clearclip"
    window_size: int | None = None
    window_stride: int | None = None
    logit_scale: float | None = None
    gaussian_std: float = 5.0
    background_prompts: tuple[str, ...] | None = None
    refine: str | None = None
    pamr_steps: int = 10
    pamr_dilations: tuple[int, ...] = (8, 16)
    area_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.prompt_templates in ((IMAGENET,), [IMAGENET], IMAGENET):
            object.__setattr__(self, "prompt_templates", imagenet_templates())
        defaults = METHOD_DEFAULTS.get(self.method)
        if defaults is not None:
            if self.image_size == 0:
                object.__setattr__(self, "image_size", int(defaults["image_size"]))
            if self.background_prompts is None:
                object.__setattr__(self, "background_prompts", METHOD_BACKGROUND[self.method])
            if self.refine is None:
                object.__setattr__(self, "refine", "pamr" if self.method == "naclip" else "none")
        if isinstance(self.background_prompts, list):
            object.__setattr__(self, "background_prompts", tuple(self.background_prompts))
        super().__post_init__()

    @classmethod
    def preset(cls, name: str, **fields: Any) -> DenseClipConfig:
        """The settings of one of the references' evaluation configs (`PRESETS`:
        ``"clearclip-voc21"``, ``"naclip-ade"``, ...), with ``fields`` over them (the
        backbone, its weights, ...)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **fields})

    def _validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {list(METHODS)}")
        if self.window_size is not None:
            check_int("window_size", self.window_size, minimum=0, maximum=MAX_IMAGE_SIZE)
        if self.window_stride is not None:
            check_int("window_stride", self.window_stride, minimum=1, maximum=MAX_IMAGE_SIZE)
        if self.refine not in REFINEMENTS:
            raise ValueError(f"unknown refine {self.refine!r}; choose one of {list(REFINEMENTS)}")
        check_int("pamr_steps", self.pamr_steps, minimum=0, maximum=1000)
        if self.area_threshold is not None:
            check_threshold(self.area_threshold)
        if not isinstance(self.pamr_dilations, tuple) or not self.pamr_dilations:
            raise ValueError(f"pamr_dilations must be a non-empty tuple of int, got "
                             f"{self.pamr_dilations!r}")  # fmt: skip
        for dilation in self.pamr_dilations:
            check_int("pamr_dilations", dilation, minimum=1, maximum=1024)
        if self.logit_scale is not None:
            check_number("logit_scale", self.logit_scale, maximum=1e4)
        check_number("gaussian_std", self.gaussian_std, maximum=1e3)
        if self.gaussian_std < MIN_GAUSSIAN_STD:
            raise ValueError(
                f"gaussian_std must be at least {MIN_GAUSSIAN_STD} patches, got "
                f"{self.gaussian_std!r} (a narrower neighbourhood is one patch, and its "
                "exp(-d^2 / 2 std^2) underflows)"
            )
        if self.window and self.stride > self.window:
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
        """The window side in pixels (the method's default when unset; 0: the whole image)."""
        if self.window_size is None:
            return int(METHOD_DEFAULTS[self.method]["window_size"])
        return self.window_size

    @property
    def stride(self) -> int:
        """Pixels between windows (the method's default when unset)."""
        if self.window_stride is not None:
            return self.window_stride
        if self.window_size is None:
            return int(METHOD_DEFAULTS[self.method]["stride"])
        return max(1, self.window // 2)

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
