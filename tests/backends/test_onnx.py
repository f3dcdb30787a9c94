"""ONNX export, the onnxruntime backend, and the torch-free example app."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import ClassSpec, ClipSegConfig, Segmenter
from clsclip.cli import main
from tests.conftest import TINY_BACKBONE, copy_graphs_from, random_rgb, tiny_segmenter

pytest.importorskip("onnxruntime", reason="needs clsclip[onnx]")
ROOT = Path(__file__).resolve().parents[2]
NAMES = ["dog", "a red car", "sky"]


def _clipseg(complex_head: bool, size: int) -> Segmenter:
    torch.manual_seed(0)
    config = ClipSegConfig(
        backbone=TINY_BACKBONE,
        pretrained=None,
        image_size=size,
        extract_layers=(1, 3, 5),
        reduce_dim=16,
        decoder_heads=2,
        decoder_intermediate_size=32,
        complex_head=complex_head,
    )
    return Segmenter.from_config(config, device="cpu")


MODELS = {
    "clsclip": lambda size: tiny_segmenter(image_size=size),
    "clsclip-prior-layer1": lambda size: tiny_segmenter(
        image_size=size, injection_layers=(1,), text_prior=True
    ),
    "clsclip-no-injection": lambda size: tiny_segmenter(
        image_size=size, injection_layers=(), text_prior=True
    ),
    "clipseg-plain": lambda size: _clipseg(False, size),  # the matrix's has the refined head
    "dense-naclip-pamr": lambda size: _dense("naclip", size, ("sky",), refine="pamr"),
    "dense-clearclip-square": lambda size: _dense("clearclip", size, ("sky",), "letterbox"),
}


def _dense(
    method: str,
    size: int,
    background: tuple[str, ...],
    resize_mode: str = "short-side",
    refine: str = "none",
) -> Segmenter:
    from clsclip.config import DenseClipConfig

    torch.manual_seed(0)
    config = DenseClipConfig(
        backbone=TINY_BACKBONE,
        pretrained=None,
        image_size=size,
        method=method,
        window_size=32,
        window_stride=16,
        background_prompts=background,
        resize_mode=resize_mode,
        refine=refine,
    )
    return Segmenter.from_config(config, device="cpu")


CASES = [
    ("clsclip", 64),
    ("clsclip-prior-layer1", 64),
    ("clsclip-no-injection", 96),
    ("clipseg-plain", 96),
    ("dense-naclip-pamr", 40),
    ("dense-clearclip-square", 64),
]
"""Configurations beyond the equivalence matrix's families (tests/test_equivalence.py: ClsCLIP,
CLIPSeg with the refined head, ClearCLIP, NACLIP and SC-CLIP with and without background
prompts), whose exports `test_onnxruntime_logits_and_crops_equal_torch` checks the same way."""


@pytest.mark.parametrize(("name", "size"), CASES)
def test_onnxruntime_logits_agree_with_torch(tmp_path, tiny_onnx_export, name, size) -> None:
    seg = MODELS[name](size)
    if (name, size) == ("clsclip", 64):  # tiny_segmenter() as it is: the shared export
        folder = tiny_onnx_export[0]
    else:
        folder = seg.export_onnx(tmp_path / "onnx")
    # the training-free logits are 50 times a cosine: float32 rounding of the cosine shows
    assert_runtime_agrees(seg, folder, 1e-3 if name.startswith("dense") else 1e-4)


def assert_runtime_agrees(seg: Segmenter, folder: Path, tolerance: float) -> None:
    """The export in ``folder`` run by onnxruntime answers as ``seg``: its config, class
    vectors, low-resolution logits and zoomed crops' logits (within ``tolerance`` times the
    logits' scale, at least 1), and masks but where a probability is that close to a threshold
    or to the background's."""
    ort = Segmenter.from_pretrained(folder, backend="onnxruntime")
    assert ort.config == seg.config
    torch.testing.assert_close(
        ort.encode_classes(NAMES), seg.encode_classes(NAMES), atol=1e-5, rtol=0
    )
    image = random_rgb(37, 53)
    boxes = {"dog": [[0, 0, 20, 20]]}
    a = seg.segment(image, NAMES, proposals=boxes)
    b = ort.segment(image, NAMES, proposals=boxes)
    scale = max(1.0, float(a.low_res_logits.abs().max()))  # CLIPSeg's are in the hundreds
    diff = (a.low_res_logits - b.low_res_logits).abs().max()
    assert diff < tolerance * scale, diff
    assert len(a.crops) == len(b.crops) == 1
    for x, y in zip(a.crops, b.crops, strict=True):
        assert (x.logits - y.logits).abs().max() < tolerance * scale
    probs = a.probs
    clear = np.abs(probs - a.threshold) > 1e-4
    full = a._full()
    background = full.background_band(0, full.height)
    if background is not None:  # near a tie with the background a mask may differ too
        clear &= np.abs(probs - background.sigmoid().numpy()) > 1e-4
    np.testing.assert_array_equal(a.masks[clear], b.masks[clear])


def test_onnxruntime_with_class_specs_thresholds_and_calibration(
    tmp_path, tiny_onnx_export
) -> None:
    """Specs (several prompts, negatives, own thresholds) and a calibrated config give the same
    answer on onnxruntime as on torch; saving the export keeps the calibrated config."""
    config = {"prompt_rule": "max", "class_thresholds": {"cat": 0.56}}
    seg = tiny_segmenter()
    seg = seg._with_config(dataclasses.replace(seg.config, **config))
    ort = Segmenter.from_pretrained(tiny_onnx_export[0], backend="onnxruntime")
    ort = ort._with_config(dataclasses.replace(ort.config, **config))
    classes = [{"dog": {"prompts": ["dog", "puppy"], "negatives": ["statue"]}}, "cat",
               ClassSpec("tree", ("tree", "bush"), threshold=0.58)]  # fmt: skip
    image = random_rgb(37, 53, seed=3)
    a = seg.segment(image, classes, threshold={"dog": 0.57})
    b = ort.segment(image, classes, threshold={"dog": 0.57})
    assert a.thresholds == b.thresholds == {"dog": 0.57, "cat": 0.56, "tree": 0.58}
    assert (a.low_res_logits - b.low_res_logits).abs().max() < 1e-4
    clear = np.abs(a.probs - np.array(list(a.thresholds.values()))[:, None, None]) > 1e-4
    np.testing.assert_array_equal(a.masks[clear], b.masks[clear])
    assert a.scores == pytest.approx(b.scores, abs=1e-5)
    calibration = {"classes": {"dog": {"scale": 2.0, "bias": -1.0}},
                   "default": {"scale": 0.5, "bias": 0.1}}  # fmt: skip
    calibrated = ort._with_config(dataclasses.replace(ort.config, calibration=calibration))
    back = Segmenter.from_pretrained(
        calibrated.save_pretrained(tmp_path / "calibrated"), backend="onnxruntime"
    )
    assert back.config.calibration == calibration
    raw, cal = ort.segment(image, ["dog", "cat"]), back.segment(image, ["dog", "cat"])
    for k, (scale, bias) in enumerate([(2.0, -1.0), (0.5, 0.1)]):
        expected = torch.sigmoid(scale * raw._full().class_logits(k) + bias).numpy()
        np.testing.assert_allclose(cal.probs[k], expected, atol=2e-6, rtol=0)


def test_export_files_and_class_vectors(tmp_path, tiny_onnx_export) -> None:
    seg = tiny_segmenter()
    out, caught = tiny_onnx_export
    assert not [w for w in caught if "training mode" in w]
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "bpe_simple_vocab_16e6.txt.gz",
        "classes.npz",
        "clsclip-onnx.json",
        "decode.onnx",
        "text.onnx",
        "views.onnx",
    ]
    spec = json.loads((out / "clsclip-onnx.json").read_text())
    assert spec["image_size"] == 64 and spec["grid"] == [8, 8] and spec["opset"] == 18
    assert spec["tokenizer"]["context_length"] == 16 and spec["text_normalize"] is True
    assert spec["config"]["model_type"] == "clsclip" and spec["clsclip_version"]
    with np.load(out / "classes.npz") as data:
        assert data["names"].tolist() == ["dog", "cat"]
        np.testing.assert_allclose(
            data["vectors"], seg.encode_classes(["dog", "cat"]).numpy(), atol=1e-6
        )
    with pytest.raises(FileNotFoundError, match="not an exported clsclip model"):
        Segmenter.from_pretrained(tmp_path, backend="onnxruntime")
    with pytest.raises(ValueError, match="unknown backend"):
        Segmenter.from_pretrained(out, backend="tensorrt")


APP_NAMES = ["red disc", "a blue square!", "tree 2"]


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory, tiny_onnx_export) -> tuple[Path, Path]:
    """`clsclip export` of a saved model with a threshold of its own (0.48), the vectors of
    `APP_NAMES` stored: the model folder and the export. Its network is `tiny_segmenter()`'s:
    the graphs are the shared export's (`copy_graphs_from`), the rest is the command's."""
    root = tmp_path_factory.mktemp("cli-export")
    model = tiny_segmenter(threshold=0.48).save_pretrained(root / "model")
    argv = ["export", str(model), "--out", str(root / "e"), "--classes", *APP_NAMES]
    with pytest.MonkeyPatch.context() as patch:
        copy_graphs_from(patch, tiny_onnx_export[0])
        assert main(argv) == 0
    return model, root / "e"


def test_cli_export_and_segment_with_onnxruntime(tmp_path, cli_export) -> None:
    model, export = cli_export
    Image.fromarray(random_rgb(30, 40)).save(tmp_path / "x.png")
    # one stored name (its vector from the export), one not (text.onnx encodes it)
    argv = ["segment", str(tmp_path / "x.png"), "--classes", "red disc", "cat", "--format",
            "label"]  # fmt: skip
    assert main([*argv, "--model", str(export), "--backend", "onnxruntime",
                 "--out", str(tmp_path / "a")]) == 0  # fmt: skip
    assert main([*argv, "--model", str(model), "--out", str(tmp_path / "b")]) == 0
    a = np.asarray(Image.open(tmp_path / "a" / "x_label.png"))
    b = np.asarray(Image.open(tmp_path / "b" / "x_label.png"))
    assert (a == b).mean() > 0.99


_NO_TORCH = """
import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "clsclip", "open_clip"):
            raise ImportError(name + " is blocked in this test")
sys.meta_path.insert(0, Block())
sys.argv = ["onnx_app.py", *sys.argv[1:]]
runpy.run_path({app!r}, run_name="__main__")
assert "torch" not in sys.modules
"""


@pytest.mark.parametrize("stored", [False, True])
def test_the_example_app_needs_no_torch_and_gives_the_same_masks(
    tmp_path, tiny_onnx_export, cli_export, stored
) -> None:
    names = APP_NAMES
    if stored:  # the names' vectors in the export, and a threshold of its own
        seg, export = tiny_segmenter(threshold=0.48), cli_export[1]
    else:  # the shared export (other names stored): the app encodes these names
        seg, export = tiny_segmenter(), tiny_onnx_export[0]
    image = random_rgb(37, 53, seed=5)
    Image.fromarray(image).save(tmp_path / "x.png")
    code = _NO_TORCH.format(app=str(ROOT / "examples" / "onnx_app.py"))
    out = tmp_path / "masks"
    argv = [str(export), str(tmp_path / "x.png"), *names, "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = seg.segment(image, names)
    probs = result.probs
    from clsclip.names import safe_name

    assert sorted(p.name for p in out.iterdir()) == [  # the CLI's names: no spaces
        "mask00_red_disc.png", "mask01_a_blue_square.png", "mask02_tree_2.png"
    ]  # fmt: skip
    for k, name in enumerate(names):
        got = np.asarray(Image.open(out / f"mask{k:02d}_{safe_name(name)}.png")) > 0
        clear = np.abs(probs[k] - result.threshold) > 1e-4
        np.testing.assert_array_equal(got[clear], result.masks[k][clear])


def test_example_tokenizer_matches_open_clip() -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from onnx_app import ClipTokenizer
    finally:
        sys.path.pop(0)
    from open_clip import tokenizer as oc

    vocab = Path(oc.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    settings = {"context_length": 77, "start_token": 49406, "end_token": 49407}
    mine = ClipTokenizer(vocab, settings)
    theirs = oc.SimpleTokenizer(context_length=77)
    texts = ["a photo of a dog.", "Hot-Dog stand's sign", "tree 2", "café crème", "x_y & 3.5kg"]
    np.testing.assert_array_equal(mine(texts), theirs(texts).numpy())


@pytest.fixture
def traced_once(monkeypatch, tiny_onnx_export) -> None:
    """`tiny_segmenter()`'s exports trace no graph again: they copy the shared export's (the
    same model's), for tests of what an export does with its graphs, not of torch's exporter."""
    copy_graphs_from(monkeypatch, tiny_onnx_export[0])


def test_int8_export_is_quantised_and_close(tmp_path, tiny_onnx_export, traced_once) -> None:
    seg = tiny_segmenter()
    fp32 = tiny_onnx_export[0]
    int8 = seg.export_onnx(tmp_path / "int8", int8=True)
    assert json.loads((int8 / "clsclip-onnx.json").read_text())["precision"] == "int8"
    assert (int8 / "views.onnx").stat().st_size < (fp32 / "views.onnx").stat().st_size
    quantised = Segmenter.from_pretrained(int8, backend="onnxruntime")
    image = random_rgb(40, 50)
    a = seg.segment(image, NAMES).low_res_logits.flatten()
    b = quantised.segment(image, NAMES).low_res_logits.flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_export_replaces_a_previous_export_whole_or_not_at_all(
    tmp_path, monkeypatch, tiny_onnx_export, traced_once
) -> None:
    import shutil

    import onnx

    seg = tiny_segmenter()
    out = tmp_path / "e"
    shutil.copytree(tiny_onnx_export[0], out)  # an earlier export, with stored classes
    (out / "README.md").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(path):
        raise RuntimeError("killed while checking " + Path(path).name)

    check = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", broken)
    with pytest.raises(RuntimeError, match="killed while checking text.onnx"):
        seg.export_onnx(out, int8=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no temporary left
    monkeypatch.setattr(onnx.checker, "check_model", check)
    seg.export_onnx(out)  # without classes: the stale classes.npz goes, the README stays
    assert not (out / "classes.npz").exists()
    assert (out / "README.md").read_text() == "mine"
    assert "classes_file" not in json.loads((out / "clsclip-onnx.json").read_text())
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        seg.export_onnx(tmp_path / "file")


def test_the_onnxruntime_backend_takes_torchs_thread_count(tiny_onnx_export) -> None:
    """``--threads`` (torch.set_num_threads) holds for onnxruntime too: a Ray actor given two
    cores must not run its sessions on all of them."""
    import torch

    from clsclip.backends.onnx_runtime import OnnxBackend

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        backend = OnnxBackend(tiny_onnx_export[0])
        for session in backend.sessions.values():
            assert session.get_session_options().intra_op_num_threads == 1
        explicit = OnnxBackend(tiny_onnx_export[0], threads=2)
        assert explicit.sessions["views"].get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)


def test_a_one_pass_training_free_model_is_refused_by_name(tmp_path) -> None:
    """NACLIP's VOC configs run each image in one pass of its own size: no fixed-size graph."""
    from clsclip.config import DenseClipConfig

    config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, method="naclip",
                             image_size=40, window_size=0)  # fmt: skip
    seg = Segmenter.from_config(config, device="cpu")
    with pytest.raises(ValueError, match=r"runs each image in one pass \(window_size=0"):
        seg.export_onnx(tmp_path / "onnx")
    wide = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, image_size=40, window_size=48)
    with pytest.raises(ValueError, match="window_size 48 px must be at most the short side"):
        Segmenter.from_config(wide, device="cpu").export_onnx(tmp_path / "onnx")
