"""Paths read from a run's own files (manifest outputs, stems, keys) never name a file outside
the run or the dataset, and a run's merged files hold every image it has done."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clsclip.cli import main
from clsclip.storage.files import inside
from tests.labelling.test_run import _images, _manifest

CLASSES = ["dog", "cat"]


def _run(inputs: list[str], model: Path, out: Path, *extra: str) -> int:
    argv = ["segment", *inputs, "--classes", *CLASSES, "--model", str(model), "--out", str(out)]
    return main([*argv, *extra])


def _rewrite_manifest(out: Path, change) -> None:
    records = _manifest(out)
    for record in records:
        change(record)
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_inside_refuses_every_way_out(tmp_path) -> None:
    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)
    assert inside(root, "sub/a.png") == root / "sub/a.png"
    assert inside(root, "a/b/../c.png") is None  # no ".." at all, even one that stays inside
    for bad in ["../x", "sub/../../x", "/etc/passwd", "", "link/x", None, 3, "a\x00b"]:
        assert inside(root, bad) is None, bad


def test_overwrite_never_removes_files_outside_the_run(tmp_path, saved_model) -> None:
    inputs = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    assert _run([str(p) for p in inputs], saved_model, out) == 0

    def escape(record: dict) -> None:
        record["outputs"] = [*record["outputs"], "sub/../../victim.txt", str(victim)]

    _rewrite_manifest(out, escape)
    assert _run([str(p) for p in inputs], saved_model, out, "--overwrite") == 0
    assert victim.read_text() == "keep me"
    assert {r["key"] for r in _manifest(out)} == {"img00.png", "img01.png"}


def test_resume_never_writes_outside_the_run_for_a_stem_from_the_manifest(
    tmp_path, saved_model
) -> None:
    inputs = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert _run([str(p) for p in inputs], saved_model, out, "--format", "label") == 0

    def escape(record: dict) -> None:
        record["stem"] = "../escaped"
        record["outputs"] = ["../escaped_label.png"]  # so the image is redone

    _rewrite_manifest(out, escape)
    assert _run([str(p) for p in inputs], saved_model, out, "--format", "label", "--resume") == 0
    assert not list(tmp_path.glob("escaped*"))
    assert sorted(p.name for p in out.glob("*_label.png")) == ["img00_label.png", "img01_label.png"]


def test_convert_refuses_keys_and_stems_that_leave_the_dataset(
    tmp_path, saved_model, capsys
) -> None:
    inputs = _images(tmp_path / "in", 2)
    out = tmp_path / "out"
    assert _run([str(p) for p in inputs], saved_model, out, "--format", "label", "coco") == 0

    def escape_key(record: dict) -> None:
        if record["key"] == "img00.png":
            record["key"] = "../../x.png"

    _rewrite_manifest(out, escape_key)
    os.utime(out / "coco.json")  # merged after the (edited) manifest
    capsys.readouterr()
    assert main(["convert", str(out), "--to", "coco", "--out", str(tmp_path / "ds")]) == 2
    assert "a path outside the dataset: refused" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "ds").exists()

    def escape_stem(record: dict) -> None:
        if record["stem"] == "img01":
            record["stem"] = "../../y"

    _rewrite_manifest(out, escape_stem)
    assert main(["convert", str(out), "--to", "voc", "--out", str(tmp_path / "ds")]) == 2
    assert "a path outside the dataset: refused" in capsys.readouterr().err
    assert not (tmp_path / "y.png").exists() and not (tmp_path / "ds").exists()


def test_a_resume_with_a_subset_of_the_inputs_can_be_converted(tmp_path, saved_model) -> None:
    """The merged COCO file holds the images of the run's last start; `clsclip convert` takes
    it as it is (before: refused, with advice that could not fix it), and still refuses a run
    whose last start stopped before its merge."""
    inputs = [str(p) for p in _images(tmp_path / "in", 3)]
    out = tmp_path / "out"
    assert _run(inputs, saved_model, out, "--format", "coco") == 0
    assert _run(inputs[1:], saved_model, out, "--format", "coco", "--resume") == 0
    assert len(json.loads((out / "coco.json").read_text())["images"]) == 2
    assert main(["convert", str(out), "--to", "coco", "--out", str(tmp_path / "ds")]) == 0
    dataset = json.loads((tmp_path / "ds/annotations/instances_default.json").read_text())
    assert sorted(i["file_name"] for i in dataset["images"]) == ["img01.png", "img02.png"]
    assert sorted(p.name for p in (tmp_path / "ds/images").iterdir()) == ["img01.png", "img02.png"]


def test_two_images_never_write_one_file(tmp_path, saved_model) -> None:
    """``x.png`` with a class named ``overlay`` writes ``x_mask00_overlay.png``, the overlay of
    an image named ``x_mask00.png``; a class named ``label`` with ``--format png label`` meets
    the label PNG. Stems are chosen so that no two images share a file."""
    from PIL import Image

    from tests.conftest import random_rgb

    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(["x.png", "x_mask00.png", "y.png", "y_mask01.png"]):
        Image.fromarray(random_rgb(30, 40, seed=i)).save(folder / name)
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--classes", "overlay", "label", "--model", str(saved_model)]
    assert main([*argv, "--out", str(out), "--format", "png", "label"]) == 0
    records = _manifest(out)
    listed = [name for record in records for name in record["outputs"]]
    assert len(listed) == len(set(listed)) == 4 * 5  # 2 masks, overlay, JSON, label each
    assert all((out / name).is_file() for name in listed)


def test_stems_that_one_file_system_sees_as_one_name_differ() -> None:
    """NFC and NFD spellings of one name, and names that differ in case, are one file on macOS:
    they get different stems."""
    import unicodedata

    from clsclip.labelling.inputs import assign_stems
    from clsclip.names import file_key, image_files

    nfc = unicodedata.normalize("NFC", "café.png")
    nfd = unicodedata.normalize("NFD", "café.png")
    assert nfc != nfd
    stems = assign_stems([nfc, nfd, "Cat.png", "cat.png"], {},
                         lambda s: image_files(s, ["dog"], ["png", "label"]))  # fmt: skip
    assert len({file_key(s) for s in stems.values()}) == 4


def test_coco_annotation_ids_stay_when_images_are_added(tmp_path, saved_model) -> None:
    inputs = [str(p) for p in _images(tmp_path / "in", 3)]
    out = tmp_path / "out"
    assert _run(inputs[1:], saved_model, out, "--format", "coco") == 0
    before = json.loads((out / "coco.json").read_text())["annotations"]
    assert _run(inputs, saved_model, out, "--format", "coco", "--resume") == 0
    after = json.loads((out / "coco.json").read_text())["annotations"]
    assert before and all(a in after for a in before)  # the same ids for the same annotations
    assert len({a["id"] for a in after}) == len(after)


def test_names_the_formats_cannot_carry_are_refused(tmp_path, saved_model, capsys) -> None:
    """VOC's text files: '#' starts a comment, a newline ends a line, label 0 is 'background';
    Label Studio's config is XML, which cannot hold control characters. Refused in one line,
    not written broken with exit 0."""
    inputs = [str(p) for p in _images(tmp_path / "in", 1)]
    for classes in (["#dog", "cat"], ["background", "cat"], ["dog\nx", "cat"], [" dog", "cat"]):
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        argv = ["segment", *inputs, "--classes", *classes, "--model", str(saved_model)]
        assert main([*argv, "--out", str(out), "--format", "label"]) == 0
        capsys.readouterr()
        target = tmp_path / f"voc{len(list(tmp_path.iterdir()))}"
        assert main(["convert", str(out), "--to", "voc", "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("VOC" in err or "background" in err), err
        assert not target.exists()
    argv = ["segment", *inputs, "--classes", "dog\x07", "cat", "--model", str(saved_model)]
    out = tmp_path / "ls"
    assert main([*argv, "--out", str(out), "--format", "label-studio"]) == 2
    assert "control character" in capsys.readouterr().err
    assert not (out / "run.json").exists()


def test_a_folder_named_abs_never_shares_a_key_with_an_image_outside(tmp_path) -> None:
    """Images outside the base get keys ``_abs/<absolute path>``; one inside a folder named
    ``_abs`` (or ``_abs_``) gets one more ``_``, so keys, stems and COCO ids never meet, and
    `key_path` gives back its real path."""
    from clsclip.labelling.inputs import OUTSIDE, coco_image_id, image_key, key_path

    base = tmp_path / "base"
    outside = tmp_path / "elsewhere" / "x.png"
    inside = base / OUTSIDE / str(outside).lstrip("/")  # _abs/<the outside path>, inside
    keys = {image_key(outside, base), image_key(inside, base),
            image_key(base / "_abs_" / "y.png", base), image_key(base / "z.png", base)}  # fmt: skip
    assert len(keys) == 4 and len({coco_image_id(k) for k in keys}) == 4
    assert key_path(image_key(outside, base)) is None
    assert key_path(image_key(inside, base)) == inside.relative_to(base).as_posix()
    assert key_path(image_key(base / "_abs_" / "y.png", base)) == "_abs_/y.png"
    assert key_path("z.png") == "z.png"
