import json

import pytest

from clsclip import ClsClipConfig
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


def test_no_injection_needs_text_prior() -> None:
    with pytest.raises(ValueError, match="cannot see the class"):
        ClsClipConfig(injection_layers=())
    assert ClsClipConfig(injection_layers=(), text_prior=True).injection_layers == ()


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
