import json
import re

import pytest

from clsclip import ClipSegConfig, ClsClipConfig, Segmenter
from tests.conftest import TINY_BACKBONE, tiny_config


def test_defaults_follow_the_paper() -> None:
    config = ClsClipConfig()
    assert config.backbone == "ViT-B-16-quickgelu"
    assert config.pretrained == "openai"
    assert config.injection_layers == (2, 3, 4)
    assert config.text_prior is False
    assert min(config.injection_layers) == 2


def test_json_round_trip(tmp_path) -> None:
    config = tiny_config(prompt_templates=("a photo of a {}.", "{}"), image_mean=(0.5, 0.5, 0.5))
    config.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["model_type"] == "clsclip" and data["format_version"] == 1
    assert data["injection_layers"] == [2, 3, 4]
    loaded = ClsClipConfig.load(tmp_path / "config.json")
    assert loaded == config
    assert isinstance(loaded.injection_layers, tuple)
    assert loaded.backbone == TINY_BACKBONE


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown config keys \['colour', 'layers'\]"):
        ClsClipConfig.from_dict({"layers": 3, "colour": "red"})


def test_wrong_model_type_and_version() -> None:
    with pytest.raises(ValueError, match="model_type is 'clipseg'"):
        ClsClipConfig.from_dict({"model_type": "clipseg"})
    with pytest.raises(ValueError, match="format_version 7"):
        ClsClipConfig.from_dict({"format_version": 7})


def test_invalid_json_file(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ClsClipConfig.load(tmp_path / "config.json")


def test_no_injection_is_the_plain_baseline() -> None:
    """``injection_layers=()`` is the paper's no-navigation baseline: the class reaches the
    decoder as a token (no text prior) or as the cosine-prior channel (text prior)."""
    assert ClsClipConfig(injection_layers=()).class_token
    assert not ClsClipConfig(injection_layers=(), text_prior=True).class_token
    assert not ClsClipConfig().class_token
    with pytest.raises(ValueError, match="needs decoder_layers >= 1"):
        ClsClipConfig(injection_layers=(), decoder_layers=0)


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"injection_layers": (2, 2)}, ValueError, "duplicates"),
        ({"injection_layers": (-1,)}, ValueError, ">= 0"),
        ({"injection_layers": ("2",)}, TypeError, "must be an int"),
        ({"prompt_templates": ("a photo",)}, ValueError, "exactly one"),
        ({"prompt_templates": ()}, ValueError, "non-empty"),
        ({"threshold": 1.5}, ValueError, r"threshold must be a number in \[0, 1\]"),
        ({"image_size": 0}, ValueError, "image_size must be >= 1"),
        ({"backbone": 3}, TypeError, "open_clip model name"),
        ({"backbone": {"embed_dim": 4}}, ValueError, r"missing keys \['vision_cfg', 'text_cfg'\]"),
        ({"image_std": (1.0, 0.0, 1.0)}, ValueError, "positive"),
        ({"image_mean": (0.5, 0.5)}, ValueError, "3 numbers"),
        ({"decoder_channels": ()}, ValueError, "at least one"),
        ({"text_prior": "yes"}, TypeError, "text_prior must be a bool"),
    ],
)
def test_invalid_values(fields, error, message) -> None:
    with pytest.raises(error, match=message):
        ClsClipConfig(**fields)


def test_custom_backbone_rejects_pretrained_tag() -> None:
    with pytest.raises(ValueError, match="pretrained=None"):
        ClsClipConfig(backbone=TINY_BACKBONE, pretrained="openai")


def test_config_is_frozen() -> None:
    config = ClsClipConfig()
    with pytest.raises(AttributeError):
        config.image_size = 480  # type: ignore[misc]


ABSURD = [
    ({"decoder_channels": (10**6,)}, "decoder_channels entry must be <= 16384"),
    ({"decoder_layers": 10**5}, "decoder_layers must be <= 256"),
    (
        {"decoder_mlp_ratio": 1e12},
        "decoder_mlp_ratio must be a finite positive number of at most 64",
    ),
    ({"decoder_heads": 10**6}, "decoder_heads must be <= 1024"),
    ({"injection_layers": (10**6,)}, "injection_layers entry must be <= 255"),
    (
        {"backbone": {**TINY_BACKBONE, "text_cfg": {**TINY_BACKBONE["text_cfg"], "width": 2**20}}},
        "text_cfg.width must be <= 16384",
    ),
    (
        {
            "backbone": {
                **TINY_BACKBONE,
                "text_cfg": {**TINY_BACKBONE["text_cfg"], "vocab_size": 10**9},
            }
        },
        "text_cfg.vocab_size must be <= 1000000",
    ),
    (
        {
            "backbone": {
                **TINY_BACKBONE,
                "vision_cfg": {**TINY_BACKBONE["vision_cfg"], "layers": 10**6},
            }
        },
        "vision_cfg.layers must be <= 256",
    ),
    (
        {
            "backbone": {
                **TINY_BACKBONE,
                "text_cfg": {**TINY_BACKBONE["text_cfg"], "context_length": 10**8},
            }
        },
        "text_cfg.context_length must be <= 4096",
    ),
    (
        {
            "backbone": {
                **TINY_BACKBONE,
                "vision_cfg": {**TINY_BACKBONE["vision_cfg"], "width": 16384, "layers": 200},
            }
        },
        "about 644 billion parameters, over the limit",
    ),
    ({"image_mean": (0.5, float("nan"), 0.5)}, "image_mean entry must be a finite number"),
    ({"image_std": (0.5, float("inf"), 0.5)}, "image_std entry must be a finite positive number"),
    ({"image_std": (0.5, 0.0, 0.5)}, "image_std entry must be a finite positive number"),
]


@pytest.mark.parametrize(("fields", "message"), ABSURD)
def test_absurd_sizes_are_refused_naming_the_field_and_bound(fields, message) -> None:
    """Refused when the config is read, before torch allocates anything."""
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny_config(**fields)


def test_clipseg_bounds() -> None:
    with pytest.raises(ValueError, match=re.escape("decoder_intermediate_size must be <= 16384")):
        ClipSegConfig(decoder_intermediate_size=10**7)
    with pytest.raises(ValueError, match=re.escape("reduce_dim must be <= 16384")):
        ClipSegConfig(reduce_dim=10**7)


def test_non_finite_normalisation_is_refused_on_load_even_unverified(segmenter, tmp_path) -> None:
    folder = segmenter.save_pretrained(tmp_path / "m")
    data = json.loads((folder / "config.json").read_text())
    data["image_std"] = [0.5, "NaN", 0.5]
    text = json.dumps(data).replace('"NaN"', "NaN")
    (folder / "config.json").write_text(text)
    with pytest.raises(ValueError, match="image_std entry must be a finite positive number"):
        Segmenter.from_pretrained(folder, verify=False)
