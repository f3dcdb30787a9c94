"""Training refuses what cannot work before any step, stops at divergence, and computes class
vectors exactly as inference does."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from clsclip import Segmenter
from clsclip.cli import main
from clsclip.datasets import FoldDataset
from clsclip.training import TrainConfig, train
from clsclip.training.loop import Trainer
from tests.training.test_train import _config, synth  # noqa: F401 - the fixture


def test_class_vectors_in_training_equal_inference(synth, tmp_path, monkeypatch) -> None:  # noqa: F811
    """The text tower runs outside autocast in float32, so a class's vector in training is the
    one inference computes (bit for bit on the same device)."""
    trainer = Trainer(
        _config(synth, tmp_path / "run", unfreeze="none", max_steps=2), progress=False
    )
    inside: list[bool] = []
    state = {"autocast": False}

    @contextlib.contextmanager
    def recording_autocast():
        state["autocast"] = True
        try:
            yield
        finally:
            state["autocast"] = False

    encode = trainer.model.encode_class_names

    def recording_encode(names):
        inside.append(state["autocast"])
        return encode(names)

    monkeypatch.setattr(trainer, "_autocast", recording_autocast)
    monkeypatch.setattr(trainer.model, "encode_class_names", recording_encode)
    trainer._train_step(next(trainer._batches()))
    assert inside == [False]
    names = ["red disc", "blue triangle"]
    reference = Segmenter(trainer.model, trainer.segmenter.config, device="cpu")
    torch.testing.assert_close(
        trainer._text(names), reference.encode_classes(names), atol=0, rtol=0
    )


def test_divergence_stops_at_the_first_non_finite_loss(synth, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "diverged"
    config = _config(synth, out, lr=1000.0, optimizer="adamw", warmup_steps=0, max_steps=50)
    with pytest.raises(FloatingPointError, match=r"training diverged: the loss at step \d+ is"):
        train(config, progress=False)
    assert not (out / "last").exists() and not (out / "best").exists()
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "Traceback" not in err


def test_non_finite_weights_are_never_saved(tmp_path) -> None:
    from tests.conftest import tiny_segmenter

    seg = tiny_segmenter()
    with torch.no_grad():
        seg.model.decoder.head[0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(
        ValueError, match=r"refusing to save '.*/m': tensor 'decoder\.head\.0\.weight'"
    ):
        seg.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_absurd_learning_rates_are_refused_when_read(synth, tmp_path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="lr must be a finite positive number of at most 1e"):
        _config(synth, tmp_path, lr=1e308)


def test_paths_are_checked_before_any_work(synth, tmp_path, capsys) -> None:  # noqa: F811
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = _config(synth, blocker / "run")
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict()))
    assert main(["train", "--config", str(tmp_path / "c.json")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "c.json"), "--data-root", "/nowhere"]) == 2
    assert "data_root '/nowhere' is not a folder" in capsys.readouterr().err
    with pytest.raises(NotADirectoryError):
        train(config, progress=False)


def test_novel_pixels_has_one_default(synth) -> None:  # noqa: F811
    bundled = Path(__file__).resolve().parents[2] / "clsclip" / "training" / "configs"
    values = {json.loads(p.read_text()).get("novel_pixels") for p in bundled.glob("*.json")}
    default = TrainConfig().novel_pixels
    data = FoldDataset(synth, dataset="pascal5i", fold=0, split="train", train=True,
                       input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3)  # fmt: skip
    assert default == data.novel_pixels == "background" and values <= {default, None}
