"""Class specs: several prompts, negatives and per-class thresholds, through `Segmenter`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clsclip import Segmenter
from clsclip.classes import ClassSpec, class_rows, resolve_classes
from clsclip.results.thresholds import resolve_thresholds, threshold_logit
from tests.conftest import random_rgb, tiny_segmenter

NAMES = ["dog", "cat", "tree"]


def _logits(result) -> torch.Tensor:
    """float32 K x H x W full-resolution logits (negatives and calibration applied)."""
    full = result._full()
    return torch.stack([full.class_logits(k) for k in range(len(result.class_names))])


def test_plain_names_and_plain_specs_give_todays_results_exactly(segmenter) -> None:
    image = random_rgb(37, 53, seed=1)
    reference = segmenter.segment(image, NAMES)
    for classes in (
        [ClassSpec("dog"), "cat", {"tree": None}],
        {"dog": "dog", "cat": ["cat"], "tree": {"prompts": ["tree"]}},
        [{"name": "dog"}, ClassSpec("cat", ("cat",)), "tree"],
    ):
        result = segmenter.segment(image, classes)
        assert result.class_names == reference.class_names
        torch.testing.assert_close(result.low_res_logits, reference.low_res_logits, rtol=0, atol=0)
        np.testing.assert_array_equal(result.label_map, reference.label_map)


def test_one_prompt_mapping_equals_the_prompt_as_a_name(segmenter) -> None:
    image = random_rgb(40, 30, seed=2)
    named = segmenter.segment(image, ["a dog", "a cat"])
    mapped = segmenter.segment(image, {"dog": "a dog", "cat": ["a cat"]})
    assert mapped.class_names == ["dog", "cat"]  # results keyed by the class names
    torch.testing.assert_close(mapped.low_res_logits, named.low_res_logits, rtol=0, atol=0)
    np.testing.assert_array_equal(mapped.mask("dog"), named.mask("a dog"))


def test_mean_rule_is_one_normalised_vector_and_max_rule_the_largest_logit() -> None:
    image, prompts = random_rgb(44, 36, seed=3), ["dog", "puppy", "hound"]
    mean_seg, max_seg = tiny_segmenter(), tiny_segmenter(prompt_rule="max")
    vectors = mean_seg.encode_classes(prompts)
    text, layout = class_rows([ClassSpec("dog", tuple(prompts))], mean_seg.encode_classes)
    expected = torch.nn.functional.normalize(vectors.mean(0), dim=0)
    torch.testing.assert_close(text[layout.prompts[0][0]], expected)
    assert len(text) == 4 and layout.prompts == ((3,),)  # three texts, then their mean
    # max: each prompt's logits, and the class takes the largest at every cell
    separate = max_seg.segment(image, prompts)
    combined = max_seg.segment(image, {"dog": prompts, "cat": "cat"})
    torch.testing.assert_close(
        combined.low_res_logits[0], separate.low_res_logits.amax(dim=0), rtol=0, atol=1e-5
    )
    mean = mean_seg.segment(image, {"dog": prompts})
    assert not torch.allclose(mean.low_res_logits[0], combined.low_res_logits[0])


def test_texts_shared_by_classes_are_one_row_each(segmenter) -> None:
    specs = resolve_classes([
        {"dog": {"prompts": ["dog", "Puppy"], "negatives": ["statue"]}},
        {"cat": {"prompts": ["cat", "puppy"], "negatives": ["Statue "]}},
    ])  # fmt: skip
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return segmenter.encode_classes(texts)

    text, layout = class_rows(specs, encode, "max")
    assert calls == [["dog", "Puppy", "statue", "cat"]]  # each reading once, in one call
    assert layout.prompts == ((0, 1), (3, 1)) and layout.negatives == ((2,), (2,))
    assert layout.all_rows == [0, 1, 3, 2] and len(text) == 4


def test_negatives_remove_exactly_the_pixels_where_a_negative_wins(monkeypatch) -> None:
    seg = tiny_segmenter(threshold=0.3)
    generator = torch.Generator().manual_seed(7)
    size = seg.encode_classes(["x"]).shape[1]
    vectors = {n: torch.nn.functional.normalize(torch.randn(size, generator=generator), dim=0)
               for n in ("dog", "statue", "cat")}  # fmt: skip
    monkeypatch.setattr(
        seg, "encode_classes", lambda names: torch.stack([vectors[n] for n in names])
    )
    image = random_rgb(45, 61, seed=4)
    plain = seg.segment(image, ["dog", "statue", "cat"])
    spec = seg.segment(image, [ClassSpec("dog", negatives=("statue",)), "cat"])
    dog, statue = _logits(plain)[:2]
    wins = statue > dog
    assert 0 < wins.float().mean() < 1  # the negative wins somewhere, not everywhere
    expected = plain.mask("dog") & ~wins.numpy()
    np.testing.assert_array_equal(spec.mask("dog"), expected)
    assert (spec.mask("dog") != plain.mask("dog")).any()
    np.testing.assert_array_equal(spec.mask("cat"), plain.mask("cat"))  # others untouched
    assert (spec.prob("dog")[wins.numpy()] == 0).all()
    with pytest.raises(ValueError, match="segment_torch does not take negatives"):
        seg.segment_torch(torch.zeros(1, 3, 32, 32), [ClassSpec("dog", negatives=("statue",))])


def test_thresholds_spec_then_call_then_config_then_default() -> None:
    specs = [ClassSpec("a", threshold=0.1), ClassSpec("b"), ClassSpec("c"), ClassSpec("d")]
    config = {"a": 0.7, "b": 0.7, "c": 0.7}
    assert resolve_thresholds(specs, {"a": 0.2, "b": 0.3}, config, 0.5) == [0.1, 0.3, 0.7, 0.5]
    assert resolve_thresholds(specs, 0.4, config, 0.5) == [0.1, 0.4, 0.4, 0.4]
    assert resolve_thresholds(specs, None, config, 0.5) == [0.1, 0.7, 0.7, 0.5]
    with pytest.raises(ValueError, match=r"thresholds given for \['e'\], which are not among"):
        resolve_thresholds(specs, {"e": 0.3}, config, 0.5)
    # end to end: the masks are the probabilities above each class's own threshold
    seg = tiny_segmenter(threshold=0.45, class_thresholds={"cat": 0.55, "tree": 0.6})
    image = random_rgb(33, 47, seed=5)
    result = seg.segment(image, [ClassSpec("dog", threshold=0.5), "cat", "tree"],
                         threshold={"tree": 0.52})  # fmt: skip
    assert result.thresholds == {"dog": 0.5, "cat": 0.55, "tree": 0.52}
    logits = _logits(result)
    for k, name in enumerate(NAMES):
        cut = threshold_logit(result.thresholds[name])
        np.testing.assert_array_equal(result.mask(name), (logits[k] > cut).numpy())
    # the label map: a pixel goes to the best class among those above their own threshold
    above = torch.stack([logits[k] > threshold_logit(t) for k, t in
                         enumerate(result.thresholds.values())])  # fmt: skip
    best = torch.where(above, logits, -math.inf).argmax(0) + 1
    expected = torch.where(above.any(0), best, 0).numpy()
    np.testing.assert_array_equal(result.label_map, expected)
    # with_threshold takes a mapping; the others keep theirs
    other = result.with_threshold({"dog": 0.9})
    assert other.thresholds == {"dog": 0.9, "cat": 0.55, "tree": 0.52}
    np.testing.assert_array_equal(other.mask("cat"), result.mask("cat"))
    summary = other.summary()["classes"]
    assert [c["threshold"] for c in summary] == [0.9, 0.55, 0.52]


def test_presence_scores_and_min_score(segmenter) -> None:
    image = random_rgb(50, 40, seed=6)
    result = segmenter.segment(image, NAMES)
    scores = result.scores
    assert set(scores) == set(NAMES) and all(0 <= s <= 1 for s in scores.values())
    assert [c["score"] for c in result.summary()["classes"]] == list(scores.values())
    # the score is the sigmoid of the 3 x 3-mean-pooled peak of the logits inside the image:
    # 50 x 40 letterboxed to 64 px is 64 x 51 of the 8 x 8 grid's 64 x 64: 8 x 7 cells
    box = result.letterbox
    assert (box.resized_size, box.input_size) == ((64, 51), 64)
    inside = result.low_res_logits[:, :8, :7]
    pooled = torch.nn.functional.avg_pool2d(inside[:, None], 3, 1, 1, count_include_pad=False)
    expected = torch.sigmoid(pooled.amax(dim=(1, 2, 3)))
    np.testing.assert_allclose(list(scores.values()), expected.numpy(), rtol=0, atol=1e-7)
    low = min(scores, key=scores.get)
    cut = (scores[low] + sorted(scores.values())[1]) / 2
    dropped = segmenter.segment(image, NAMES, min_score=cut)
    assert not dropped.mask(low).any() and dropped.summary()["min_score"] == cut
    for name in NAMES:
        if name != low:
            np.testing.assert_array_equal(dropped.mask(name), result.mask(name))
    kept = segmenter.segment(image, NAMES, min_score=0.0)
    np.testing.assert_array_equal(kept.label_map, result.label_map)


@pytest.mark.parametrize(
    ("classes", "error", "message"),
    [
        ({"dog": []}, ValueError, "class 'dog': the prompt list is empty"),
        ({"dog": {"prompts": []}}, ValueError, "class 'dog': the prompt list is empty"),
        (
            {"dog": {"prompts": ["dog"], "negatives": ["Dog"]}},
            ValueError,
            "'dog' is both a prompt and a negative",
        ),
        (
            {"dog": {"threshold": 1.5}},
            ValueError,
            r"class 'dog': threshold must be a number in \[0, 1\], got 1.5",
        ),
        ({"dog": {"threshold": float("nan")}}, ValueError, "class 'dog': threshold"),
        ({"dog": {"prompt": ["x"]}}, ValueError, r"class 'dog': unknown keys \['prompt'\]"),
        ({"dog": 3}, TypeError, "class 'dog': give a prompt, a list of prompts or a mapping"),
        ({"dog": ["ok", 3]}, TypeError, r"class 'dog': prompts\[1\] must be a str"),
        ([{"dog": "dog"}, "dog"], ValueError, "duplicate class name 'dog'"),
        ({"dog": ["  "]}, ValueError, "class 'dog': prompts"),
    ],
)
def test_bad_specs_are_one_line_errors(segmenter, classes, error, message) -> None:
    with pytest.raises(error, match=message) as caught:
        segmenter.segment(random_rgb(20, 20), classes)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        (1.5, r"threshold must be a number in \[0, 1\]"),
        ({"dog": -0.1}, "threshold of 'dog'"),
        ({"dog": float("nan")}, "threshold of 'dog'"),
    ],
)
def test_bad_call_thresholds(segmenter, threshold, message) -> None:
    with pytest.raises(ValueError, match=message):
        segmenter.segment(random_rgb(20, 20), ["dog"], threshold=threshold)


def test_config_class_thresholds_and_rule_are_checked_and_saved(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"class_thresholds\['dog'\]"):
        tiny_segmenter(class_thresholds={"dog": 2.0})
    with pytest.raises(ValueError, match="unknown prompt_rule 'median'"):
        tiny_segmenter(prompt_rule="median")
    seg = tiny_segmenter(class_thresholds={"dog": 0.3}, prompt_rule="max")
    back = Segmenter.from_pretrained(seg.save_pretrained(tmp_path / "m"))
    assert back.config.class_thresholds == {"dog": 0.3} and back.config.prompt_rule == "max"
    assert back.segment(random_rgb(20, 20), ["dog", "cat"]).thresholds["dog"] == 0.3


def test_segment_torch_takes_specs_thresholds_and_calibration() -> None:
    calibration = {"classes": {"cat": {"scale": 3.0, "bias": -0.2}}, "default": None}
    seg = tiny_segmenter(prompt_rule="max", class_thresholds={"cat": 0.45},
                         calibration=calibration)  # fmt: skip
    images = [random_rgb(64, 64, seed=s) for s in range(2)]  # the input size: no resizing
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    classes = {"dog": ["dog", "puppy"], "cat": "cat"}
    out = seg.segment_torch(batch, classes, threshold={"dog": 0.56})
    for b, image in enumerate(images):
        expected = seg.segment(image, classes, threshold={"dog": 0.56})
        torch.testing.assert_close(out.low_res_logits[b], expected.low_res_logits, atol=1e-5,
                                   rtol=0)  # fmt: skip
        result = out.result(b)
        assert result.thresholds == expected.thresholds == {"dog": 0.56, "cat": 0.45}
        near = np.abs(expected.probs - np.array([0.56, 0.45])[:, None, None]).min(0) < 1e-4
        np.testing.assert_array_equal(out.label_maps[b].numpy()[~near], expected.label_map[~near])
        np.testing.assert_array_equal(result.label_map[~near], expected.label_map[~near])
        np.testing.assert_allclose(result.prob("cat"), expected.prob("cat"), atol=1e-5)
