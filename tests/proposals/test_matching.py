import pytest
import torch

from clsclip.proposals import LabelMatcher, normalize_label


def test_normalize_label() -> None:
    assert normalize_label("  Potted_Plant ") == "potted plant"
    assert normalize_label("The   dining-table") == "dining table"


@pytest.mark.parametrize(
    ("voc", "coco"),
    [
        ("aeroplane", "airplane"),
        ("motorbike", "motorcycle"),
        ("sofa", "couch"),
        ("tvmonitor", "tv"),
        ("diningtable", "dining table"),
        ("pottedplant", "potted plant"),
        ("person", "person"),
    ],
)
def test_pascal_and_coco_names_match(voc, coco) -> None:
    matcher = LabelMatcher(clip_threshold=None)
    assert matcher.same_class(coco, voc) and matcher.same_class(voc, coco)


def test_match_by_name_and_synonym() -> None:
    matcher = LabelMatcher(clip_threshold=None)
    labels = ["dog", "airplane", "Dog", "car"]
    assert matcher.match(labels, ["dog", "aeroplane", "bird"]) == [[0, 2], [1], []]
    assert not matcher.same_class("dog", "cat")


def test_clip_fallback_only_for_unmatched_classes() -> None:
    vectors = {
        "puppy": [1.0, 0.0],
        "dog": [1.0, 0.0],
        "car": [0.0, 1.0],
        "kitten": [0.6, 0.8],
    }
    calls = []

    def encode(names: list[str]) -> torch.Tensor:
        calls.append(list(names))
        return torch.tensor([vectors[n] for n in names])

    matcher = LabelMatcher(clip_threshold=0.95)
    matches = matcher.match(["dog", "car", "Dog"], ["puppy", "car", "kitten"], encode)
    assert matches == [[0, 2], [1], []]
    assert calls == [["dog", "car"], ["puppy", "kitten"]]  # labels deduplicated by case


def test_class_agnostic_and_validation() -> None:
    assert LabelMatcher(class_agnostic=True).match(["a", "b"], ["x", "y"]) == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="clip_threshold"):
        LabelMatcher(clip_threshold=2.0)


def test_clip_fallback_compares_directions_not_dot_products() -> None:
    """Vectors of norm 5 at cosine 0.5 have a dot product of 12.5, which passed the 0.9 bar
    before (a detector's "toaster" box served "dog"); the matcher compares directions."""
    directions = {
        "toaster": torch.tensor([1.0, 0.0]),
        "dog": torch.tensor([0.5, 3**0.5 / 2]),  # cosine 0.5 with "toaster"
        "hound": torch.tensor([0.95, (1 - 0.95**2) ** 0.5]),  # cosine 0.95 with "toaster"
    }

    def encode(names: list[str]) -> torch.Tensor:
        return torch.stack([5.0 * directions[n] for n in names])

    matcher = LabelMatcher(synonyms=(), clip_threshold=0.9)
    assert matcher.match(["toaster"], ["dog"], encode) == [[]]
    assert matcher.match(["toaster"], ["hound"], encode) == [[0]]


def test_clipseg_class_vectors_are_matched_by_cosine() -> None:
    """CLIPSeg's class vectors are raw text features (norm far from 1): matches follow their
    cosine similarity, computed here independently."""
    from tests.backends.test_onnx import _clipseg

    seg = _clipseg(True, 64)
    labels, classes = ["toaster", "dog", "car"], ["a puppy", "toaster oven", "sky"]
    vectors = seg.encode_classes(labels + classes)
    assert not torch.allclose(vectors.norm(dim=-1), torch.ones(6), atol=0.1)
    a = torch.nn.functional.normalize(vectors[3:], dim=-1)
    b = torch.nn.functional.normalize(vectors[:3], dim=-1)
    threshold = float((a @ b.T).median())
    matcher = LabelMatcher(synonyms=(), clip_threshold=threshold)
    found = matcher.match(labels, classes, seg.encode_classes)
    expected = [[j for j in range(3) if float(a[i] @ b[j]) >= threshold] for i in range(3)]
    assert found == expected
