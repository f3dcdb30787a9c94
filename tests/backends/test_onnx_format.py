"""Exported folders that lie are refused naming the field or file; errors stay one line."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from clsclip import Segmenter
from clsclip.backends.onnx_runtime import execution_providers
from clsclip.cli import main
from tests.conftest import random_rgb, shared_export, tiny_segmenter

pytest.importorskip("onnxruntime", reason="needs clsclip[onnx]")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_onnx_export) -> tuple[Path, Path]:
    """Two exports of two different tiny models (same shapes, other weights): the shared one
    (stored classes dog and cat) and one of another seed, the equivalence matrix's ClsCLIP
    family's (`shared_export`)."""
    b = shared_export(tmp_path_factory, "family-clsclip", lambda: tiny_segmenter(seed=2))[0]
    return tiny_onnx_export[0], b


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _edit(folder: Path, change) -> None:
    path = folder / "clsclip-onnx.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _load(folder: Path) -> Segmenter:
    return Segmenter.from_pretrained(folder, backend="onnxruntime")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image_std", [0.2, float("nan"), 0.2], "'image_std' must be 3 finite positive numbers"),
        ("image_std", [0.2, 0.0, 0.2], "'image_std' must be 3 finite positive numbers"),
        ("image_mean", [float("nan"), 0.4, 0.4], "'image_mean' must be 3 finite numbers"),
        ("image_size", 10**9, r"'image_size' must be an integer in \[1, 4096\]"),
        ("grid", [8, 10**6], "'grid' must be 2 integers"),
        ("threshold", 2.0, r"'threshold' must be a number in \[0, 1\]"),
        ("resize_mode", "crop", "'resize_mode' must be one of"),
        ("text_normalize", "yes", "'text_normalize' must be true or false"),
        ("prompt_templates", [], "'prompt_templates' must be a non-empty list"),
    ],
)
def test_descriptions_with_bad_values_are_refused(tmp_path, exports, field, value, message) -> None:
    folder = _copy(exports[0], tmp_path)
    _edit(folder, lambda d: d.__setitem__(field, value))
    with pytest.raises(ValueError, match=message):
        _load(folder)


def test_a_huge_context_length_is_refused_before_allocation(tmp_path, exports) -> None:
    folder = _copy(exports[0], tmp_path)
    _edit(folder, lambda d: d["tokenizer"].__setitem__("context_length", 10**9))
    with pytest.raises(ValueError, match=r"'context_length' must be an integer in \[2, 4096\]"):
        _load(folder)


@pytest.mark.parametrize("graph", ["views.onnx", "decode.onnx", "text.onnx"])
def test_graphs_from_two_exports_are_refused_naming_the_file(tmp_path, exports, graph) -> None:
    folder = _copy(exports[0], tmp_path)
    shutil.copyfile(exports[1] / graph, folder / graph)
    with pytest.raises(ValueError, match=rf"{graph} is not the graph this export wrote"):
        _load(folder)


def test_missing_truncated_and_malformed_folders(tmp_path, exports) -> None:
    folder = _copy(exports[0], tmp_path)
    (folder / "decode.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="lacks the graph decode.onnx"):
        _load(folder)
    shutil.rmtree(folder)
    folder = _copy(exports[0], tmp_path)
    data = (folder / "views.onnx").read_bytes()
    (folder / "views.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="views.onnx is not the graph this export wrote"):
        _load(folder)
    _edit(folder, lambda d: d["graphs"]["views"].pop("sha256"))  # an export without hashes
    with pytest.raises(ValueError, match="views.onnx is not an ONNX graph onnxruntime can load"):
        _load(folder)
    _edit(folder, lambda d: d.pop("graphs"))
    with pytest.raises(ValueError, match="'graphs' must be an object with the graphs"):
        _load(folder)
    (folder / "clsclip-onnx.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object, got list"):
        _load(folder)
    (folder / "clsclip-onnx.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        _load(folder)
    with pytest.raises(FileNotFoundError, match="exported model folder not found"):
        _load(tmp_path / "nowhere")


def test_cli_reports_a_broken_export_in_one_line(tmp_path, exports, capsys) -> None:
    folder = _copy(exports[0], tmp_path)
    shutil.copyfile(exports[1] / "views.onnx", folder / "views.onnx")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(random_rgb(20, 20)).save(image)
    argv = ["segment", str(image), "--classes", "dog", "--model", str(folder)]
    code = main([*argv, "--backend", "onnxruntime", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "views.onnx is not the graph this export wrote" in err


def test_an_onnxruntime_segmenter_saves_a_copy_and_uses_stored_classes(tmp_path, exports) -> None:
    seg = _load(exports[0])
    with pytest.raises(RuntimeError, match="has no torch model"):
        _ = seg.model
    copy = seg.save_pretrained(tmp_path / "saved")
    back = _load(copy)
    image = random_rgb(30, 40)
    torch.testing.assert_close(
        back.segment(image, ["dog", "tree"]).low_res_logits,
        seg.segment(image, ["dog", "tree"]).low_res_logits,
    )
    # "dog" comes from classes.npz, "tree" from text.onnx: both equal the torch model's.
    torch.testing.assert_close(
        seg.encode_classes(["dog", "tree"]),
        tiny_segmenter(seed=0).encode_classes(["dog", "tree"]),
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(RuntimeError, match="already runs an ONNX export"):
        seg.export_onnx(tmp_path / "again")


def test_devices_are_honoured_or_refused(monkeypatch) -> None:
    import onnxruntime

    assert execution_providers(torch.device("cpu")) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="cannot run on 'cuda:1'.*onnxruntime-gpu"):
        execution_providers(torch.device("cuda", 1))
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert execution_providers(torch.device("cuda", 1))[0] == (
        "CUDAExecutionProvider",
        {"device_id": 1},
    )
    with pytest.raises(ValueError, match="cannot run on 'mps'"):
        execution_providers(torch.device("mps"))


def test_export_names_what_is_missing_or_unsupported(tmp_path, monkeypatch) -> None:
    seg = tiny_segmenter()
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r'needs onnxscript: pip install "clsclip\[onnx\]"'):
        seg.export_onnx(tmp_path / "x")
    monkeypatch.undo()
    clip_bpe = seg.model.tokenizer
    seg.model.tokenizer = lambda texts, **kwargs: clip_bpe(texts, **kwargs)  # not CLIP's BPE
    with pytest.raises(ValueError, match="CLIP's BPE tokenizer"):
        seg.export_onnx(tmp_path / "y")
