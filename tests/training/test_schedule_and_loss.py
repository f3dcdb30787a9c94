import math

import pytest
import torch

from clsclip.training import TrainConfig, masked_bce
from clsclip.training.config import bundled_configs
from clsclip.training.schedule import lr_factor

COMMON = {"max_steps": 110, "warmup_steps": 10, "poly_power": 0.9, "restart_steps": 50}


def test_warmup_then_poly() -> None:
    assert lr_factor(0, schedule="poly", **COMMON) == pytest.approx(0.1)
    assert lr_factor(9, schedule="poly", **COMMON) == pytest.approx(1.0)
    assert lr_factor(10, schedule="poly", **COMMON) == pytest.approx(1.0)
    assert lr_factor(60, schedule="poly", **COMMON) == pytest.approx(0.5**0.9)
    assert lr_factor(110, schedule="poly", **COMMON) == 0.0


def test_cosine_with_restarts() -> None:
    assert lr_factor(10, schedule="cosine_restarts", **COMMON) == pytest.approx(1.0)
    assert lr_factor(35, schedule="cosine_restarts", **COMMON) == pytest.approx(0.5)
    assert lr_factor(59, schedule="cosine_restarts", **COMMON) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 49 / 50))
    )
    assert lr_factor(60, schedule="cosine_restarts", **COMMON) == pytest.approx(1.0)  # restart


def test_masked_bce_ignores_255() -> None:
    logits = torch.tensor([[[2.0, -1.0], [5.0, 0.0]]])
    target = torch.tensor([[[1, 0], [255, 255]]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    )
    assert masked_bce(logits, target) == pytest.approx(expected.item())
    assert masked_bce(logits, torch.full_like(target, 255)).item() == 0.0


def test_bundled_configs_follow_the_method() -> None:
    assert bundled_configs() == [f"{d}-fold{f}" for d in ("coco20i", "pascal5i") for f in range(4)]
    pascal = TrainConfig.load("pascal5i-fold2")
    assert pascal.fold == 2 and pascal.model_config().image_size == 480
    assert (pascal.optimizer, pascal.lr, pascal.batch_size, pascal.momentum) == (
        "sgd",
        5e-5,
        8,
        0.9,
    )
    assert (pascal.weight_decay, pascal.schedule, pascal.poly_power) == (1e-4, "poly", 0.9)
    coco = TrainConfig.load("coco20i-fold1")
    assert (coco.model_config().image_size, coco.lr, coco.batch_size) == (352, 1e-4, 32)
    assert pascal.model_config().injection_layers == (2, 3, 4)


def test_training_config_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown training config keys \['epochs'\]"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(FileNotFoundError, match="training config not found: 'nope.json'; bundled"):
        TrainConfig.load("nope.json")
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig(model={"colour": 1})
