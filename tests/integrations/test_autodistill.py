"""autodistill: a `CaptionOntology` becomes class specs, and ``label()`` (autodistill's own
labelling loop and YOLO writer) gives the masks `Segmenter.segment` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clsclip import ClassSpec
from tests.conftest import import_when_run
from tests.labelling.test_run import _images

_libraries, lib = import_when_run(
    detection="autodistill.detection",
    sv="supervision",
    scipy="scipy",
    ClsClip="clsclip.integrations.autodistill:ClsClip",
    ontology_specs="clsclip.integrations.autodistill:ontology_specs",
)


ONTOLOGY = {"a dog": "dog", "a puppy": "dog", "a cat": "cat"}
SPECS = [ClassSpec("dog", prompts=("a dog", "a puppy")), ClassSpec("cat", prompts=("a cat",))]


def _stem(path: str) -> str:
    return Path(path).stem


def test_many_captions_are_the_prompts_of_one_class() -> None:
    specs, ids = lib.ontology_specs(lib.detection.CaptionOntology(ONTOLOGY))
    assert specs == SPECS
    assert ids == [0, 2]  # indexes of ontology.classes() == ["dog", "dog", "cat"]
    with pytest.raises(TypeError, match="caption strings"):
        lib.ontology_specs(lib.detection.CaptionOntology({("a", "tuple"): "dog"}))


def test_label_writes_a_dataset_of_our_masks(tmp_path, segmenter) -> None:
    paths = _images(tmp_path / "in", 3)
    base = lib.ClsClip(lib.detection.CaptionOntology(ONTOLOGY), segmenter, threshold=0.57)
    dataset = base.label(str(tmp_path / "in"), extension=".png",
                         output_folder=str(tmp_path / "out"))  # fmt: skip
    assert dataset.classes == ["dog", "dog", "cat"] and len(dataset) == 3
    references = {path.stem: segmenter.segment(path, SPECS, threshold=0.57) for path in paths}
    for path, _image, found in dataset:  # in memory: exactly our instance masks
        result = references[_stem(path)]
        ours = result.to_supervision(instances=True)
        np.testing.assert_array_equal(found.mask, ours.mask)
        np.testing.assert_array_equal(found.xyxy, ours.xyxy)
        assert found.class_id.tolist() == [{0: 0, 1: 2}[k] for k in ours.class_id]
    # on disk: YOLO polygons that supervision drew from the masks, read back by supervision
    out = tmp_path / "out"
    read = 0
    for split in ("train", "valid"):
        if not (out / split / "images").is_dir():
            continue
        back = lib.sv.DetectionDataset.from_yolo(
            str(out / split / "images"), str(out / split / "labels"), str(out / "data.yaml"),
            force_masks=True,
        )  # fmt: skip
        for path, _image, found in back:
            result = references[_stem(path)]
            for class_id, name in ((0, "dog"), (2, "cat")):
                mask = result.mask(name)
                drawn = found.mask[found.class_id == class_id].any(axis=0)
                assert (mask & drawn).sum() / (mask | drawn).sum() > 0.95, (path, name)
            read += 1
    assert read == 3


def test_predict_takes_paths_pil_and_opencv_bgr_arrays(tmp_path, segmenter) -> None:
    (path,) = _images(tmp_path, 1)
    base = lib.ClsClip(lib.detection.CaptionOntology(ONTOLOGY), segmenter, threshold=0.57,
                   instances=False)  # fmt: skip
    rgb = np.asarray(Image.open(path).convert("RGB"))
    by_path = base.predict(str(path))
    assert len(by_path) == 2  # one detection per class without instances
    for other in (Image.open(path), rgb[..., ::-1].copy()):  # BGR: what label() passes
        np.testing.assert_array_equal(base.predict(other).mask, by_path.mask)
    assert by_path.class_id.tolist() == [0, 2]


def test_an_image_without_any_class_gives_no_detections(tmp_path, segmenter) -> None:
    _images(tmp_path / "in", 2)
    base = lib.ClsClip(lib.detection.CaptionOntology(ONTOLOGY), segmenter, threshold=0.999)
    dataset = base.label(str(tmp_path / "in"), extension=".png",
                         output_folder=str(tmp_path / "out"))  # fmt: skip
    assert [len(found) for _, _, found in dataset] == [0, 0]
