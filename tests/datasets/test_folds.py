import pytest

from clsclip.datasets import COCO_CLASSES, PASCAL_CLASSES, base_classes, novel_classes


def test_pascal_folds() -> None:
    assert len(PASCAL_CLASSES) == 20
    assert [novel_classes("pascal5i", f) for f in range(4)] == [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
        [11, 12, 13, 14, 15],
        [16, 17, 18, 19, 20],
    ]
    assert base_classes("pascal5i", 1) == [1, 2, 3, 4, 5, *range(11, 21)]


def test_coco_interleaved_folds() -> None:
    assert len(COCO_CLASSES) == 80
    assert novel_classes("coco20i", 0) == list(range(1, 81, 4))
    assert novel_classes("coco20i", 3)[:3] == [4, 8, 12]
    folds = [set(novel_classes("coco20i", f)) for f in range(4)]
    assert set().union(*folds) == set(range(1, 81)) and sum(map(len, folds)) == 80
    assert set(base_classes("coco20i", 2)) == set(range(1, 81)) - folds[2]


def test_bad_folds() -> None:
    with pytest.raises(ValueError, match="fold must be 0, 1, 2 or 3"):
        novel_classes("pascal5i", 4)
    with pytest.raises(ValueError, match="unknown dataset 'voc'"):
        novel_classes("voc", 0)
