"""A run folder belongs to one run: resumes with other settings, grown inputs, cut manifests,
concurrent runs and every fault of a labelling run, as users meet them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from clsclip.cli import main
from clsclip.labelling import coco_image_id
from tests.conftest import random_rgb, tiny_segmenter
from tests.labelling.test_run import ROOT, _images, _manifest, _outputs, assert_same_outputs

CLASSES = ["dog", "cat"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _run(images: list[str], model: Path, out: Path, *extra: str) -> int:
    argv = ["segment", *images, "--classes", *CLASSES, "--model", str(model), "--out", str(out)]
    return main([*argv, "--format", "png", "label", "coco", "npz", *extra])


@pytest.fixture
def other_model(tmp_path_factory) -> Path:
    return tiny_segmenter(seed=3).save_pretrained(tmp_path_factory.mktemp("other"))


def test_resume_with_other_settings_is_refused_naming_them_and_writes_nothing(
    tmp_path, saved_model, other_model, capsys
) -> None:
    folder = tmp_path / "in"
    _images(folder, 3)
    out = tmp_path / "out"
    assert _run([str(folder)], saved_model, out) == 0
    capsys.readouterr()
    before = _snapshot(out)
    cases = [
        (["--classes", "sky", "tree", "grass"], 'classes: ["dog", "cat"] (this run: ["sky"'),
        (["--threshold", "0.99"], "threshold: 0.5 (this run: 0.99)"),
        (["--format", "label"], "formats: "),
        (["--instances"], "instances: false (this run: true)"),
    ]
    for extra, message in cases:
        argv = ["segment", str(folder), "--classes", *CLASSES, "--model", str(saved_model)]
        argv += ["--out", str(out), "--format", "png", "label", "coco", "npz", "--resume"]
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert "holds another run; it differs in" in err and message in err, err
        assert err.count("\n") == 1
    assert _run([str(folder)], other_model, out, "--resume") == 2
    assert "model: " in capsys.readouterr().err
    assert _snapshot(out) == before  # not one file written or touched
    # A fresh run into the folder is refused; --overwrite starts over.
    assert _run([str(folder)], saved_model, out) == 2
    assert "holds a run already" in capsys.readouterr().err
    argv = ["segment", str(folder), "--classes", "sky", "--model", str(saved_model)]
    assert main([*argv, "--out", str(out), "--format", "png", "--overwrite"]) == 0
    names = {p.name for p in out.glob("*.png")}
    assert names == {f"img0{i}_{s}.png" for i in range(3) for s in ("mask00_sky", "overlay")}
    assert not (out / "coco.json").exists()  # the old run's files are gone


def test_grown_shrunk_and_reordered_inputs_keep_every_file_and_unique_ids(
    tmp_path, saved_model
) -> None:
    """x/cat.jpg done, then w/cat.jpg added: each keeps its own stem; COCO ids never repeat."""
    root = tmp_path / "in"
    for sub, seed in (("x", 1), ("y", 2)):
        (root / sub).mkdir(parents=True)
        Image.fromarray(random_rgb(30, 40, seed=seed)).save(root / sub / "cat.jpg")
    out = tmp_path / "out"
    first = [str(root / "x" / "cat.jpg"), str(root / "y" / "cat.jpg")]
    assert _run(first, saved_model, out) == 0
    before = {k: v for k, v in _outputs(out).items() if not k.startswith("coco.")}
    (root / "w").mkdir()
    Image.fromarray(random_rgb(33, 41, seed=3)).save(root / "w" / "cat.jpg")
    grown = [str(root / "w" / "cat.jpg"), *reversed(first)]  # added, and reordered
    assert _run(grown, saved_model, out, "--resume") == 0
    after = _outputs(out)
    assert_same_outputs({k: v for k, v in after.items() if k in before}, before)  # bytes
    records = {r["key"]: r for r in _manifest(out)}
    assert sorted(records) == ["w/cat.jpg", "x/cat.jpg", "y/cat.jpg"]
    assert records["w/cat.jpg"]["stem"] == "w/cat"
    coco = json.loads((out / "coco.json").read_text())
    ids = [image["id"] for image in coco["images"]]
    assert len(set(ids)) == 3 and sorted(ids) == sorted(coco_image_id(k) for k in records)
    for annotation in coco["annotations"]:
        image = next(i for i in coco["images"] if i["id"] == annotation["image_id"])
        assert annotation["segmentation"]["size"] == [image["height"], image["width"]]
    # Removing an image keeps its files; the COCO file lists the run's current images.
    assert _run([str(root / "x" / "cat.jpg")], saved_model, out, "--resume") == 0
    assert (out / "y" / "cat_label.png").is_file()
    assert [i["file_name"] for i in json.loads((out / "coco.json").read_text())["images"]] == [
        str(root / "x" / "cat.jpg")
    ]


def test_a_cut_manifest_line_loses_no_record(tmp_path, saved_model) -> None:
    _images(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert _run([str(tmp_path / "in")], saved_model, out) == 0
    lines = (out / "manifest.jsonl").read_text().splitlines()
    cut = "\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2]  # kill -9 mid-line
    (out / "manifest.jsonl").write_text(cut)
    assert _run([str(tmp_path / "in")], saved_model, out, "--resume") == 0
    records = _manifest_records(out)
    assert sorted(records) == [f"img0{i}.png" for i in range(4)]
    assert all(r["status"] == "ok" for r in records.values())
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 4


def _manifest_records(out: Path) -> dict[str, dict]:
    records = {}
    for line in (out / "manifest.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            records[record["key"]] = record
    return records


def test_hostile_manifest_lines_deleted_outputs_and_broken_parts(
    tmp_path, saved_model, capsys
) -> None:
    _images(tmp_path / "in", 3)
    out = tmp_path / "out"
    assert _run([str(tmp_path / "in")], saved_model, out) == 0
    with open(out / "manifest.jsonl", "a") as f:
        f.write('[1, 2]\n42\n{"no": "key"}\n"text"\n')
    (out / "img01_label.png").unlink()  # listed as done, deleted since
    (out / "coco-parts" / "img02.json").write_text("{broken")
    code = _run([str(tmp_path / "in")], saved_model, out, "--resume")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (out / "img01_label.png").is_file()  # redone
    assert code == 1 and "1 of 3 image(s) failed" in err  # the broken part is counted
    assert _run([str(tmp_path / "in")], saved_model, out, "--resume") == 1  # not redone by itself
    (out / "coco-parts" / "img02.json").unlink()
    (out / "img02.npz").unlink()
    assert _run([str(tmp_path / "in")], saved_model, out, "--resume") == 0


def test_bad_lists_and_odd_inputs(tmp_path, saved_model, capsys) -> None:
    out = tmp_path / "out"
    base = ["segment", "--classes", "dog", "--model", str(saved_model), "--out", str(out)]
    assert main([*base, "--list", str(tmp_path / "missing.txt")]) == 2
    assert "--list file not found" in capsys.readouterr().err
    assert main([*base, "--list", str(tmp_path)]) == 2
    assert "is a folder, not a text file" in capsys.readouterr().err
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9.png\n")
    assert main([*base, "--list", str(tmp_path / "latin1.txt")]) == 2
    assert "is not UTF-8 text (line 1" in capsys.readouterr().err
    # A 244-character file name: the stem is shortened with a hash, the run works.
    long = tmp_path / "long"
    long.mkdir()
    Image.fromarray(random_rgb(20, 20)).save(long / ("x" * 240 + ".png"))
    Image.fromarray(random_rgb(21, 20)).save(long / "y.png")
    listing = long / "list.txt"
    listing.write_text("  # comment\ny.png\n./y.png\n" + "\n".join(["y.png"] * 200) + "\n")
    assert main([*base, str(long), "--list", str(listing), "--format", "png"]) == 0
    records = _manifest(out)
    assert len(records) == 2  # y.png listed 202 times, segmented once
    stems = [r["stem"] for r in records]
    assert all(len(s.encode()) < 120 for s in stems) and any("-" in s for s in stems)


def test_out_inside_a_recursive_input_is_never_read_as_input(tmp_path, saved_model) -> None:
    data = tmp_path / "data"
    _images(data, 2)
    out = data / "labels"
    argv = ["segment", str(data), "--recursive", "--classes", "dog", "--model", str(saved_model)]
    assert main([*argv, "--out", str(out), "--format", "png"]) == 0
    assert main([*argv, "--out", str(out), "--format", "png", "--resume"]) == 0
    assert sorted(r["key"] for r in _manifest(out)) == ["img00.png", "img01.png"]


_HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from clsclip.labelling.manifest import lock_folder
lock = lock_folder(Path({out!r}))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_process_is_refused_while_a_live_run_holds_the_folder(
    tmp_path, saved_model, capsys
) -> None:
    _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD.format(root=str(ROOT), out=str(out))],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        assert _run([str(tmp_path / "in")], saved_model, out) == 2
        assert time.perf_counter() - start < 30  # at once, not after a wait
        assert "another clsclip run is writing into" in capsys.readouterr().err
        assert not (out / "manifest.jsonl").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert _run([str(tmp_path / "in")], saved_model, out, "--overwrite") == 0  # lock released


def test_a_full_disk_stops_with_one_line(tmp_path, saved_model, monkeypatch, capsys) -> None:
    from clsclip.labelling import manifest as manifest_module

    _images(tmp_path / "in", 4)
    real, calls = manifest_module.Manifest.append, []

    def append(self, record):
        calls.append(record)
        if len(calls) > 2:
            raise OSError(28, "No space left on device")
        real(self, record)

    monkeypatch.setattr(manifest_module.Manifest, "append", append)
    out = tmp_path / "out"
    assert _run([str(tmp_path / "in")], saved_model, out) == 1
    err = capsys.readouterr().err
    assert "stopped: [Errno 28] No space left on device; --resume goes on" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert _run([str(tmp_path / "in")], saved_model, out, "--resume") == 0
    assert len(_manifest_records(out)) == 4


_WORKERS = """
import sys
sys.path.insert(0, {root!r})
from clsclip.cli import main
sys.exit(main({argv!r}))
"""


def test_a_killed_decoding_worker_stops_the_run_and_resume_completes_it(
    tmp_path, saved_model
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(60):
        Image.fromarray(random_rgb(200, 300, seed=i)).save(folder / f"img{i:02d}.png")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--classes", *CLASSES, "--model", str(saved_model)]
    argv += ["--out", str(out), "--format", "label", "--workers", "2", "--batch-size", "2"]
    argv += ["--threads", "2"]  # the same count in the killed process and in this one
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKERS.format(root=str(ROOT), argv=argv)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (
        (out / "manifest.jsonl").exists() and len(_manifest_records(out)) >= 4
    ):
        time.sleep(0.02)
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
    ).stdout.split()
    assert children, "the run has decoding workers"
    os.kill(int(children[0]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "decoding worker died" in err and "Traceback" not in err
    assert main([*argv, "--resume"]) == 0
    records = _manifest_records(out)
    assert sorted(records) == [f"img{i:02d}.png" for i in range(60)]
    whole = tmp_path / "whole"
    argv_whole = [a if a != str(out) else str(whole) for a in argv]
    assert main(argv_whole) == 0
    assert_same_outputs(_outputs(out), _outputs(whole))


def test_temporaries_of_writers_killed_mid_write_are_gone_when_the_run_ends(
    tmp_path, saved_model
) -> None:
    """A Ray actor killed while writing leaves a temporary that its replacement does not see as
    stale (the dead process may be unreaped, its pid still "alive"); the run removes every
    temporary when its engine has finished (it holds the folder's lock, so no writer is left)."""
    folder = tmp_path / "in"
    _images(folder, 2)
    out = tmp_path / "out"
    assert _run([str(folder)], saved_model, out) == 0
    sub = out / "deeper"
    sub.mkdir()
    litter = [out / f".img00_label.png.clsclip-tmp-{os.getpid()}-0123abcd",
              sub / f".x.json.clsclip-tmp-{os.getpid()}-89abcdef"]  # fmt: skip
    for path in litter:
        path.write_bytes(b"half a file")
    (out / ".notes").write_text("a user's hidden file stays")
    assert _run([str(folder)], saved_model, out, "--resume") == 0
    assert not any(p.exists() for p in litter)
    assert (out / ".notes").read_text() == "a user's hidden file stays"
