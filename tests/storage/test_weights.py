import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from clsclip import Segmenter
from clsclip.model import builder
from tests.conftest import TINY_BACKBONE, random_rgb, tiny_config, tiny_segmenter


def test_save_then_load_gives_identical_outputs(segmenter, saved_model) -> None:
    assert sorted(p.name for p in saved_model.iterdir()) == ["config.json", "model.safetensors"]
    loaded = Segmenter.from_pretrained(saved_model, device="cpu")
    assert loaded.config == segmenter.config
    image = random_rgb(41, 29)
    # Identical weights (checked exactly below); outputs agree to float rounding of the kernels.
    np.testing.assert_allclose(
        loaded.segment(image, ["dog", "cat"]).probs,
        segmenter.segment(image, ["dog", "cat"]).probs,
        atol=1e-6,
    )
    for name, tensor in segmenter.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, rtol=0, atol=0)


def test_random_backbone_is_stored_with_the_model(saved_model) -> None:
    with safe_open(str(saved_model / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
        assert f.metadata()["clsclip_contents"] == "full"
    assert any(k.startswith("backbone.clip.visual.") for k in keys)
    assert any(k.startswith("navigator.") for k in keys)
    assert any(k.startswith("decoder.") for k in keys)


def test_missing_and_unexpected_keys_are_listed(saved_model, tmp_path) -> None:
    tensors = load_file(saved_model / "model.safetensors")
    del tensors["navigator.proj.bias"]
    tensors["decoder.extra.weight"] = torch.zeros(2)
    (tmp_path / "config.json").write_text((saved_model / "config.json").read_text())
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as info:
        Segmenter.from_pretrained(tmp_path, device="cpu")
    message = str(info.value)
    assert "1 missing keys: navigator.proj.bias" in message
    assert "1 unexpected keys: decoder.extra.weight" in message


def test_shape_mismatch_is_listed(saved_model, tmp_path) -> None:
    config = json.loads((saved_model / "config.json").read_text())
    config["decoder_channels"] = [32, 16, 4]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((saved_model / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="saved with another config.json"):
        Segmenter.from_pretrained(tmp_path, device="cpu")
    # Without the config check (or for files saved before it), the strict key check lists it.
    with pytest.raises(ValueError, match=r"shape mismatches: decoder.head.4.bias: file \(8,\)"):
        Segmenter.from_pretrained(tmp_path, device="cpu", verify=False)


def test_corrupt_weights_file(saved_model, tmp_path) -> None:
    (tmp_path / "config.json").write_text((saved_model / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(OSError, match="model.safetensors"):
        Segmenter.from_pretrained(tmp_path, device="cpu")


def test_named_pretrained_backbone_stores_only_trained_parts(monkeypatch, tmp_path) -> None:
    """A published backbone (name + tag) is fetched by open_clip, not stored with the model."""
    built: list[str | None] = []
    real = builder._build_custom_clip

    def fake_named(name, pretrained, cache_dir):
        built.append(pretrained)
        torch.manual_seed(1)  # the "published" weights: the same every time
        return real(TINY_BACKBONE)

    monkeypatch.setattr(builder, "_build_named_clip", fake_named)
    config = tiny_config(backbone="ViT-B-16", pretrained="openai")
    torch.manual_seed(0)
    seg = Segmenter.from_config(config, device="cpu")
    seg.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert keys and not any(k.startswith("backbone.") for k in keys)
    loaded = Segmenter.from_pretrained(tmp_path, device="cpu")
    assert built == ["openai", "openai"]
    image = random_rgb(30, 30)
    np.testing.assert_array_equal(
        loaded.segment(image, ["dog"]).probs, seg.segment(image, ["dog"]).probs
    )
    # A fine-tuned (unfrozen) backbone is stored, so open_clip's copy does not replace it.
    seg.model.backbone.requires_grad_(True)
    seg.save_pretrained(tmp_path / "finetuned")
    keys = load_file(tmp_path / "finetuned" / "model.safetensors").keys()
    assert any(k.startswith("backbone.") for k in keys)


def test_trained_parts_without_a_pretrained_tag_is_an_error(tmp_path) -> None:
    seg = tiny_segmenter()
    seg.save_pretrained(tmp_path, include_backbone=False)
    with pytest.raises(ValueError, match="holds no backbone weights and config.pretrained is None"):
        Segmenter.from_pretrained(tmp_path, device="cpu")


def test_a_training_free_model_folder_is_its_config_alone(monkeypatch, tmp_path) -> None:
    """A training-free model on a published backbone has nothing to store: the folder holds
    only config.json, and loading builds the backbone from open_clip's tag again."""
    from clsclip.config import DenseClipConfig

    real = builder._build_custom_clip

    def fake_named(name, pretrained, cache_dir):
        torch.manual_seed(1)  # the "published" weights: the same every time
        return real(TINY_BACKBONE)

    monkeypatch.setattr(builder, "_build_named_clip", fake_named)
    config = DenseClipConfig(backbone="ViT-B-16", pretrained="openai", image_size=64,
                             window_size=32, method="naclip")  # fmt: skip
    seg = Segmenter.from_config(config, device="cpu")
    folder = seg.save_pretrained(tmp_path / "naclip")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]
    loaded = Segmenter.from_pretrained(folder, device="cpu")
    assert loaded.config == config and "training-free" in repr(loaded)
    image = random_rgb(30, 40)
    np.testing.assert_array_equal(
        loaded.segment(image, ["dog", "cat"]).probs, seg.segment(image, ["dog", "cat"]).probs
    )
    # Without a pretrained tag a config alone would mean a random backbone: refused.
    random_folder = tmp_path / "random"
    random_folder.mkdir()
    DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None).save(random_folder / "config.json")
    with pytest.raises(FileNotFoundError, match="no model.safetensors and its config names no"):
        Segmenter.from_pretrained(random_folder, device="cpu")
