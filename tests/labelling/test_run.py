"""Labelling a dataset: segment_many, the output formats, resume after kill -9, torchrun ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clsclip import SegmentationResult
from clsclip.cli import main
from clsclip.labelling import list_images
from clsclip.results.formats import label_image
from tests.conftest import random_rgb, tiny_segmenter

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["dog", "cat", "tree"]


def _images(folder: Path, count: int, bad: tuple[int, ...] = ()) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:02d}.png"
        if i in bad:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(random_rgb(40 + i, 56, seed=i)).save(path)
        paths.append(path)
    return paths


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _outputs(out: Path) -> dict[str, bytes]:
    """Every output file and its bytes, except the manifest (it holds timings) and npz files
    (logits: see `_same_outputs`)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.jsonl" and p.suffix not in (".npz", ".json")
    }


def _close(x, y) -> bool:
    if isinstance(x, float) or isinstance(y, float):
        return abs(x - y) <= 1e-5
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return isinstance(y, list) and len(x) == len(y) and all(map(_close, x, y))
    return x == y


def _same_outputs(a: Path, b: Path) -> None:
    """The same files: equal bytes, except numbers from the network (JSON probabilities and
    scores, npz logits), equal up to float rounding: a resumed run batches images differently,
    and matrix products may round the last bit differently with the batch size."""
    assert _outputs(a) == _outputs(b)
    jsons = sorted(str(p.relative_to(a)) for p in a.rglob("*.json"))
    assert jsons == sorted(str(p.relative_to(b)) for p in b.rglob("*.json"))
    for name in jsons:
        assert _close(json.loads((a / name).read_text()), json.loads((b / name).read_text())), name
    names = sorted(p.name for p in a.glob("*.npz"))
    assert names == sorted(p.name for p in b.glob("*.npz"))
    for name in names:
        with np.load(a / name) as x, np.load(b / name) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                if x[key].dtype.kind == "f":
                    np.testing.assert_allclose(x[key], y[key], atol=1e-5, rtol=0)
                else:
                    np.testing.assert_array_equal(x[key], y[key])


def test_segment_many_batches_in_order_with_workers(tmp_path) -> None:
    seg = tiny_segmenter()
    paths = _images(tmp_path / "in", 7, bad=(3,))
    for workers in (0, 2):
        outcomes = list(seg.segment_many(paths, CLASSES, batch_size=3, workers=workers))
        assert [o.index for o in outcomes] == list(range(7))
        assert [o.ok for o in outcomes] == [True, True, True, False, True, True, True]
        assert outcomes[3].result is None and "cannot decode" in outcomes[3].error
        assert outcomes[0].source == str(paths[0])
        for outcome in outcomes:
            if outcome.ok:
                alone = seg.segment(paths[outcome.index], CLASSES)
                np.testing.assert_allclose(outcome.result.probs, alone.probs, atol=1e-5)
    arrays = [random_rgb(30, 30, seed=s) for s in range(2)]  # not only paths
    outcomes = list(seg.segment_many(arrays, CLASSES, keep_images=False))
    assert outcomes[1].source is None and outcomes[1].result.image is None


def test_list_images_recursive_and_list_file(tmp_path) -> None:
    _images(tmp_path / "a", 2)
    _images(tmp_path / "a" / "sub", 1)
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert len(list_images([tmp_path / "a"])) == 2
    found = list_images([tmp_path / "a"], recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/img00.png",
        "a/img01.png",
        "a/sub/img00.png",
    ]
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{found[2]}\n\n{found[0]}\n")
    assert list_images([], list_file=listing) == [found[2], found[0]]


def test_label_format_and_class_list(tmp_path, saved_model) -> None:
    paths = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    argv = ["segment", *map(str, paths), "--classes", *CLASSES, "--model", str(saved_model)]
    assert main([*argv, "--out", str(out), "--format", "label", "--threshold", "0.3"]) == 0
    label = Image.open(out / "img00_label.png")
    assert label.mode == "P" and label.size == (56, 40)
    expected = tiny_segmenter().segment(paths[0], CLASSES, threshold=0.3).label_map
    np.testing.assert_array_equal(np.asarray(label), expected)
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes] == ["background", *CLASSES]
    assert label.getpalette()[3:6] == classes[1]["color"]
    assert sorted(p.name for p in out.iterdir()) == [
        "classes.json",
        "img00_label.png",
        "img01_label.png",
        "manifest.jsonl",
    ]
    many = label_image(np.array([[0, 299]], np.int32), 300)  # beyond 255 classes: 16 bits
    many.save(tmp_path / "many.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "many.png")), [[0, 299]])


def test_label_png_is_much_smaller_than_png_masks(tmp_path, saved_model) -> None:
    paths = _images(tmp_path / "in", 1)
    names = [f"class {i}" for i in range(20)]
    sizes = {}
    for fmt in ("png", "label"):
        out = tmp_path / fmt
        argv = ["segment", str(paths[0]), "--classes", *names, "--model", str(saved_model)]
        assert main([*argv, "--out", str(out), "--format", fmt]) == 0
        sizes[fmt] = sum(p.stat().st_size for p in out.iterdir() if p.suffix == ".png")
    assert sizes["png"] > 5 * sizes["label"]


@pytest.mark.parametrize("instances", [False, True])
def test_coco_round_trips_through_pycocotools(tmp_path, saved_model, instances) -> None:
    from pycocotools.coco import COCO

    paths = _images(tmp_path / "in", 3, bad=(1,))
    out = tmp_path / "out"
    argv = ["segment", *map(str, paths), "--classes", *CLASSES, "--model", str(saved_model)]
    argv += ["--out", str(out), "--format", "coco", "--threshold", "0.45"]
    assert main([*argv, *(["--instances"] if instances else [])]) == 1  # one bad image
    coco = COCO(str(out / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
    assert sorted(coco.getImgIds()) == [1, 3]  # ids are input positions + 1
    seg = tiny_segmenter()
    for image_id, path in ((1, paths[0]), (3, paths[2])):
        result = seg.segment(path, CLASSES, threshold=0.45)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert annotations, "the tiny model predicts something"
        for k, name in enumerate(CLASSES):
            mine = [a for a in annotations if a["category_id"] == k + 1]
            decoded = np.zeros(result.size, bool)
            for annotation in mine:
                part = coco.annToMask(annotation).astype(bool)
                assert not (decoded & part).any()  # components do not overlap
                decoded |= part
                assert annotation["area"] == int(part.sum())
                x, y, w, h = annotation["bbox"]
                rows, cols = np.nonzero(part)
                assert (x, y, x + w, y + h) == (
                    cols.min(),
                    rows.min(),
                    cols.max() + 1,
                    rows.max() + 1,
                )
                assert 0.45 < annotation["score"] <= 1
            np.testing.assert_array_equal(decoded, result.mask(name))
            if not instances:
                assert len(mine) <= 1


def test_npz_keeps_the_network_output(tmp_path) -> None:
    seg = tiny_segmenter()
    result = seg.segment(random_rgb(50, 70), CLASSES, proposals={"cat": [[0, 0, 20, 20]]})
    result.save_npz(tmp_path / "r.npz")
    back = SegmentationResult.load_npz(tmp_path / "r.npz")
    assert back.class_names == CLASSES and back.threshold == result.threshold
    np.testing.assert_array_equal(back.low_res_logits.numpy(), result.low_res_logits.numpy())
    assert [c.region for c in back.crops] == [c.region for c in result.crops]
    np.testing.assert_array_equal(back.boxes["cat"], result.boxes["cat"])
    np.testing.assert_array_equal(
        back.with_threshold(0.2).label_map, result.with_threshold(0.2).label_map
    )


def test_to_supervision(monkeypatch) -> None:
    seg = tiny_segmenter()
    result = seg.segment(random_rgb(40, 60), CLASSES, threshold=0.45)
    detections = result.to_supervision()
    present = [k for k, name in enumerate(CLASSES) if result.mask(name).any()]
    assert detections.class_id.tolist() == present and len(detections) == len(present)
    for i, k in enumerate(present):
        np.testing.assert_array_equal(detections.mask[i], result.mask(CLASSES[k]))
        assert detections.data["class_name"][i] == CLASSES[k]
    monkeypatch.setitem(sys.modules, "supervision", None)
    with pytest.raises(ImportError, match=r'pip install "clsclip\[supervision\]"'):
        result.to_supervision()


_RUN = """
import sys
sys.path.insert(0, {root!r})
from clsclip.cli import main
sys.exit(main({argv!r}))
"""


def test_kill_9_then_resume_gives_the_uninterrupted_outputs(tmp_path, saved_model) -> None:
    paths = _images(tmp_path / "in", 24, bad=(5,))
    argv = ["segment", str(tmp_path / "in"), "--classes", *CLASSES, "--model", str(saved_model)]
    argv += ["--format", "png", "label", "coco", "npz", "--batch-size", "2"]
    whole = tmp_path / "whole"
    assert main([*argv, "--out", str(whole)]) == 1
    out = tmp_path / "out"
    script = _RUN.format(root=str(ROOT), argv=[*argv, "--out", str(out)])
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (out / "manifest.jsonl").exists() and len(_manifest(out)) >= 6
    ):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(_manifest(out))
    assert 6 <= finished < 24
    assert main([*argv, "--out", str(out), "--resume"]) == 1
    _same_outputs(out, whole)
    assert not [p for p in out.rglob(".*")]  # no temporaries left
    entries = _manifest(out)
    assert [e["image"] for e in entries] == [str(p) for p in paths]
    assert [e["status"] for e in entries].count("failed") == 1


def _torchrun(argv: list[str], nproc: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    command += ["--standalone", "-m", "clsclip", *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_two_gloo_ranks_cover_every_image_once_and_resume_with_one(tmp_path, saved_model) -> None:
    paths = _images(tmp_path / "in", 9, bad=(4,))
    argv = ["segment", str(tmp_path / "in"), "--classes", *CLASSES, "--model", str(saved_model)]
    argv += ["--format", "label", "coco", "--device", "cpu"]
    out = tmp_path / "out"
    done = _torchrun([*argv, "--out", str(out)], 2)
    assert done.returncode == 1, done.stderr[-3000:]
    entries = _manifest(out)
    assert [e["image"] for e in entries] == [str(p) for p in paths]  # each once, in order
    assert {e.get("rank") for e in entries} == {None}
    assert not list(out.glob("manifest.rank*"))
    whole = tmp_path / "whole"
    assert main([*argv, "--out", str(whole)]) == 1
    _same_outputs(out, whole)
    # A resumed run with another number of ranks redoes only what is missing (the bad image).
    (out / "img02_label.png").unlink()
    lines = [json.dumps(e) for e in entries if not e["image"].endswith("img02.png")]
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    assert main([*argv, "--out", str(out), "--resume"]) == 1
    _same_outputs(out, whole)


def test_resume_with_more_formats_redoes_the_images(tmp_path, saved_model) -> None:
    paths = _images(tmp_path / "in", 3)
    argv = ["segment", *map(str, paths), "--classes", *CLASSES, "--model", str(saved_model)]
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--format", "label"]) == 0
    assert main([*argv, "--out", str(out), "--format", "label", "coco", "--resume"]) == 0
    assert len(json.loads((out / "coco.json").read_text())["images"]) == 3
    assert all(e["formats"] == ["label", "coco"] for e in _manifest(out))
