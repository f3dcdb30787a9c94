"""Result files read back as untrusted input: every declared shape bounded before allocation."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from clsclip import SegmentationResult
from clsclip.results.npz import MAX_ARRAY_BYTES, _savez
from tests.conftest import random_rgb, tiny_segmenter

NAMES = ["dog", "cat"]


@pytest.fixture(scope="module")
def entries() -> dict[str, np.ndarray]:
    """The arrays of a real result file (with one ClsCLIP+ crop)."""
    result = tiny_segmenter().segment(
        random_rgb(50, 70), NAMES, proposals={"cat": [[0, 0, 20, 20]]}
    )
    buffer = io.BytesIO()
    result.save_npz(buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _write(path: Path, entries: dict[str, np.ndarray], **changes: object) -> Path:
    arrays = {**entries, **changes}
    _savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_the_real_file_reads_back(tmp_path, entries) -> None:
    back = SegmentationResult.load_npz(_write(tmp_path / "r.npz", entries))
    assert back.class_names == NAMES and len(back.crops) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": None}, r"missing entries \['version'\]"),
        ({"version": np.int64(7)}, "npz version 7"),
        ({"letterbox": np.array([50, 70, -5, 64, 64])}, "'letterbox' .* is not a letterbox"),
        ({"letterbox": np.array([100000, 100000, 64, 64, 64])}, "over the limit"),
        ({"crop_region": np.array([[60, 0, 90, 20]])}, r"crop 0 region .* is not inside"),
        ({"crop_class": np.array([5])}, "crop 0 is for class 5"),
        ({"threshold": np.float64(1.5)}, r"'threshold' must be in \[0, 1\]"),
        ({"fusion": np.asarray("union")}, "unknown 'fusion'"),
        ({"class_names": np.asarray("[1, 2]")}, "'class_names' must be a non-empty list"),
        ({"class_names": np.asarray("not json")}, "'class_names' is not valid JSON"),
        ({"logits": np.zeros((2, 3), np.float32)}, "'logits' must be a 3-d"),
        ({"logits": np.zeros((3, 8, 8), np.float32)}, "K = 2 classes"),
    ],
)
def test_hostile_files_are_refused_naming_the_entry(tmp_path, entries, change, message) -> None:
    path = _write(tmp_path / "bad.npz", entries, **change)
    with pytest.raises(ValueError, match=message):
        SegmentationResult.load_npz(path)


def test_object_arrays_are_refused(tmp_path, entries) -> None:
    path = tmp_path / "obj.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in {**entries, "boxes": np.array([{"a": 1}], dtype=object)}.items():
            with archive.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=True)
    with pytest.raises(ValueError, match="holds Python objects"):
        SegmentationResult.load_npz(path)


def test_a_small_file_declaring_gigabytes_is_refused_before_reading(tmp_path, entries) -> None:
    """A zip bomb: 4096 x 4096 zeros per class compress to almost nothing, but 20 classes
    declare 1.25 GiB; the headers are read, the data never."""
    names = np.asarray('["' + '", "'.join(f"c{k}" for k in range(20)) + '"]')
    logits = np.zeros((20, 4096, 4096), np.float32)
    path = _write(tmp_path / "bomb.npz", entries, class_names=names, logits=logits)
    assert path.stat().st_size < 3 * 2**20 and logits.nbytes > MAX_ARRAY_BYTES
    with pytest.raises(ValueError, match="declares .* MiB of arrays, over the limit"):
        SegmentationResult.load_npz(path)


def test_not_a_zip_file(tmp_path) -> None:
    path = tmp_path / "x.npz"
    path.write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="is not an npz result file"):
        SegmentationResult.load_npz(path)
