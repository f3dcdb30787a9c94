"""Labelling a dataset: segment_many, the output formats, the run folder, resume after kill -9."""

from __future__ import annotations

import io
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
from clsclip.labelling import coco_image_id, list_inputs
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
    """Every file a run wrote and its bytes, except the manifest (timings) and run.json (its
    creation time): a resumed or rerun run gives exactly these bytes (each image's network
    passes run on their own, so batching cannot change a bit)."""
    skip = {"manifest.jsonl", "run.json", ".clsclip.lock"}
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def assert_same_outputs(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    """``got == want`` (`_outputs` of two folders), failing with the names of the missing, extra
    and differing files (and for images, how many pixels differ) instead of their bytes."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    differ = []
    for name in sorted(set(got) & set(want)):
        if got[name] == want[name]:
            continue
        detail = ""
        if name.endswith(".png"):
            a, b = (np.asarray(Image.open(io.BytesIO(x[name]))) for x in (got, want))
            detail = f" ({int((a != b).sum())} pixels)" if a.shape == b.shape else " (size)"
        differ.append(name + detail)
    assert not (missing or extra or differ), f"missing {missing}, extra {extra}, differ {differ}"


def _segment(argv: list[str]) -> list[str]:
    return ["segment", *argv]


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


def test_list_inputs_recursive_list_file_and_keys(tmp_path) -> None:
    _images(tmp_path / "a", 2)
    _images(tmp_path / "a" / "sub", 1)
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert len(list_inputs([tmp_path / "a"], base=None)) == 2
    found = list_inputs([tmp_path / "a"], base=None, recursive=True)
    assert [i.key for i in found] == ["img00.png", "img01.png", "sub/img00.png"]
    listing = tmp_path / "lists" / "list.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# my images\n  # an indented comment\n../a/sub/img00.png\n\n"
        f"{found[0].path}\n../a/img00.png\n../a/sub\n"
    )
    listed = list_inputs([], base=tmp_path, list_file=listing)
    # relative to the list file; a path listed twice (by any spelling) once; folders expanded
    assert [i.key for i in listed] == ["a/sub/img00.png", "a/img00.png"]
    outside = list_inputs([found[0].path], base=tmp_path / "elsewhere")
    assert outside[0].key.startswith("_abs/") and outside[0].key.endswith("a/img00.png")


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
        ".clsclip.lock",
        "classes.json",
        "img00_label.png",
        "img01_label.png",
        "manifest.jsonl",
        "run.json",
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
    ids = {p: coco_image_id(p.name) for p in (paths[0], paths[2])}  # from the image's key
    assert sorted(coco.getImgIds()) == sorted(ids.values())
    seg = tiny_segmenter()
    for path, image_id in ids.items():
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
    assert_same_outputs(_outputs(out), _outputs(whole))  # byte for byte
    assert [p.name for p in out.rglob(".*")] == [".clsclip.lock"]  # no temporaries left
    records = {e["key"]: e for e in _manifest(out)}
    assert sorted(records) == sorted(p.name for p in paths)
    assert [e["status"] for e in records.values()].count("failed") == 1


def test_clsclip_segment_under_torchrun_says_to_use_ray(
    tmp_path, saved_model, capsys, monkeypatch
) -> None:
    paths = _images(tmp_path / "in", 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = [
        str(paths[0]),
        "--classes",
        "dog",
        "--model",
        str(saved_model),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(_segment(argv)) == 2
    assert (
        "does not shard with torchrun; run one process with --engine ray" in capsys.readouterr().err
    )
