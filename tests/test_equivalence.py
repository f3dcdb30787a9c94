"""One answer, whatever the way in: every entry point, model family and class spec gives the
answer of `Segmenter.segment` on one image alone.

The matrix: model families (ClsCLIP, CLIPSeg converted from transformers, training-free
ClearCLIP and NACLIP with and without background prompts) x class specs (names, several
prompts, negatives, per-class thresholds, min_score) x ways in (`segment_batch` mixed with other
requests that share the names but not the specs, `segment_many` with and without decoding
workers, `segment_video` on a stream of frames, `segment_torch`, the CLI, the onnxruntime
backend).

Equal means: the same computation gives the same bits (``exact``); a request batched with
others goes through matrix products of another size, which round their last bit differently,
so its probabilities agree within `TOLERANCE` and its masks may differ only at pixels that close
to their threshold (`TOLERANCE`; onnxruntime: ten times it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clsclip import Segmenter
from clsclip.checks import text_key
from clsclip.cli import main
from clsclip.config import DenseClipConfig
from tests.conftest import (
    TINY_BACKBONE,
    copy_graphs_from,
    random_rgb,
    shared_export,
    tiny_segmenter,
)

TOLERANCE = {"clipseg": 1e-4}
"""Probabilities of a batched request, per family (default 1e-5): the tiny random CLIPSeg's
logits are in the hundreds, so the last bit of a product is about 1e-4 of a probability."""
NAMES = ["dog", "cat", "grass"]

FAMILIES = [
    "clsclip",
    "clsclip-calibrated",
    "clipseg",
    "clearclip",
    "naclip",
    "naclip-no-background",
    "scclip",
]

SPECS: dict[str, Any] = {
    "names": NAMES,
    "prompts": {"dog": ["dog", "puppy"], "cat": "a photo of a cat", "grass": None},
    "negatives": {"dog": {"negatives": ["a statue of a dog"]}, "cat": None, "grass": None},
    "thresholds": {"dog": {"threshold": 0.3}, "cat": None, "grass": {"threshold": 0.7}},
}
OTHER_SPEC: dict[str, Any] = {"dog": ["a red car"], "cat": {"negatives": ["dog"]}, "grass": None}
"""Same names, other meanings: batched with a request, it must not change that request."""


def _dense(method: str, background: tuple[str, ...]) -> Segmenter:
    torch.manual_seed(3)
    config = DenseClipConfig(
        backbone=TINY_BACKBONE, pretrained=None, image_size=64, window_size=32,
        window_stride=16, method=method, background_prompts=background,
    )  # fmt: skip
    return Segmenter.from_config(config, device="cpu")


def _clipseg(folder: Path) -> Path:
    from tests.model.test_clipseg import _hf_model

    _hf_model(seed=5).save_pretrained(folder)  # a transformers checkpoint, converted on load
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved model folder of each family (the CLIPSeg one as transformers writes it)."""
    root = tmp_path_factory.mktemp("families")
    made = {
        "clsclip": tiny_segmenter(seed=2),
        "clearclip": _dense("clearclip", ("sky", "wall")),
        "naclip": _dense("naclip", ("sky", "wall")),
        "naclip-no-background": _dense("naclip", ()),
        "scclip": _dense("scclip", ("sky", "wall")),
    }
    made["clsclip-calibrated"] = _calibrated(made["clsclip"])
    out = {name: seg.save_pretrained(root / name) for name, seg in made.items()}
    out["clipseg"] = _clipseg(root / "clipseg")
    return out


def _calibrated(seg: Segmenter) -> Segmenter:
    """The model calibrated on two labelled images: per-class scale, bias and threshold in its
    config (its masks and probabilities are the calibrated ones on every way in)."""
    samples = []
    for i in range(2):
        labels = np.zeros((45, 70), np.uint8)
        labels[:20, :30], labels[25:, 40:] = 1, 2
        samples.append((_image(seg, i), labels))
    calibrated = seg.calibrate(samples, ["dog", "cat"])
    assert calibrated.config.calibration is not None
    return calibrated


@pytest.fixture(scope="module")
def segmenters(folders: dict[str, Path]) -> dict[str, Segmenter]:
    return {
        name: Segmenter.from_pretrained(folder, device="cpu") for name, folder in folders.items()
    }


def _image(segmenter: Segmenter, seed: int = 0) -> Image.Image:
    return Image.fromarray(random_rgb(45, 70, seed))


def _min_score(case: str) -> float | None:
    return 0.55 if case == "thresholds" else None


def _negative_ties(result: Any, tolerance: float) -> np.ndarray:
    """``K x H x W``: where a class's logit is within ``tolerance`` of one of its negatives'
    (the negative wins where it is larger, setting the class's probability to 0: which of the
    two wins there is the last bits' choice)."""
    full = result._full()
    prediction = full.prediction
    tied = np.zeros((prediction.num_classes, full.height, full.width), dtype=bool)
    if prediction.negatives is None:
        return tied
    classes = list(range(prediction.num_classes))
    logits = full._fused(classes, 0, full.height)
    columns = full._view.columns(prediction.negatives.float())
    negatives = full._view.rows_of(columns, 0, full.height)
    for j, owner in enumerate(prediction.negative_of):
        tied[owner] |= (negatives[j] - logits[owner]).abs().cpu().numpy() < tolerance
    return tied


def assert_same(result: Any, reference: Any, *, tolerance: float = 0.0) -> None:
    """``result`` answers as ``reference``: names, thresholds, probabilities within
    ``tolerance``, masks and label map equal (but where a probability is within ``tolerance`` of
    its threshold, or two classes' of each other, or a class's logit of its negative's)."""
    assert list(result.class_names) == list(reference.class_names)
    assert result.thresholds == pytest.approx(reference.thresholds)
    probs, expected = result.probs, reference.probs
    assert probs.shape == expected.shape
    if tolerance == 0.0:
        assert np.array_equal(probs, expected)
        assert np.array_equal(result.label_map, reference.label_map)
        assert result.scores == reference.scores
        return
    tied = _negative_ties(reference, tolerance)
    np.testing.assert_allclose(probs[~tied], expected[~tied], rtol=0, atol=tolerance)
    cuts = np.asarray(reference.effective_thresholds(), dtype=np.float32)[:, None, None]
    near = (np.abs(expected - cuts) < tolerance).any(axis=0) | tied.any(axis=0)
    ordered = np.sort(expected, axis=0)
    if len(ordered) > 1:
        near |= ordered[-1] - ordered[-2] < tolerance
    full = reference._full()
    background = full.background_band(0, full.height)
    if background is not None:  # or the best class's and the background's
        near |= np.abs(ordered[-1] - background.sigmoid().cpu().numpy()) < tolerance
    assert not ((result.label_map != reference.label_map) & ~near).any()
    for name, score in reference.scores.items():
        assert result.scores[name] == pytest.approx(score, abs=tolerance)


@pytest.mark.parametrize("case", list(SPECS))
@pytest.mark.parametrize("family", FAMILIES)
def test_batched_with_other_specs_of_the_same_names(segmenters, family, case) -> None:
    seg = segmenters[family]
    image, other = _image(seg, 0), _image(seg, 1)
    spec, min_score = SPECS[case], _min_score(case)
    reference = seg.segment(image, spec, min_score=min_score)
    results = seg.segment_batch(
        [(other, NAMES), (image, spec), (image, OTHER_SPEC), (other, spec)],
        min_score=min_score,
    )
    assert_same(results[1], reference, tolerance=TOLERANCE.get(family, 1e-5))
    assert_same(results[2], seg.segment(image, OTHER_SPEC, min_score=min_score),
                tolerance=TOLERANCE.get(family, 1e-5))  # fmt: skip
    assert_same(
        results[3],
        seg.segment(other, spec, min_score=min_score),
        tolerance=TOLERANCE.get(family, 1e-5),
    )


@pytest.mark.parametrize("case", list(SPECS))
@pytest.mark.parametrize("family", FAMILIES)
def test_segment_many_is_segment(segmenters, family, case) -> None:
    seg = segmenters[family]
    images = [_image(seg, i) for i in range(3)]
    spec, min_score = SPECS[case], _min_score(case)
    outcomes = list(seg.segment_many(images, spec, batch_size=2, deterministic=True,
                                     min_score=min_score))  # fmt: skip
    for image, outcome in zip(images, outcomes, strict=True):
        assert_same(outcome.result, seg.segment(image, spec, min_score=min_score))


@pytest.mark.parametrize("case", list(SPECS))
@pytest.mark.parametrize("family", FAMILIES)
def test_segment_video_is_segment(segmenters, family, case) -> None:
    """A stream of frames through the video pipeline (decode thread, batches): each frame alone
    gives `segment`'s bits; batched, within the batching tolerance."""
    seg = segmenters[family]
    frames = [np.asarray(_image(seg, i)) for i in range(3)]
    spec, min_score = SPECS[case], _min_score(case)
    alone = list(seg.segment_video(iter(frames), spec, batch_size=2, deterministic=True,
                                   min_score=min_score))  # fmt: skip
    batched = list(seg.segment_video(iter(frames), spec, batch_size=3, min_score=min_score))
    for i, frame in enumerate(frames):
        reference = seg.segment(frame, spec, min_score=min_score)
        assert alone[i].index == batched[i].index == i
        assert_same(alone[i].result, reference)
        assert_same(batched[i].result, reference, tolerance=TOLERANCE.get(family, 1e-5))


@pytest.mark.parametrize("family", FAMILIES)
def test_segment_many_with_decoding_workers_is_segment(segmenters, family) -> None:
    seg = segmenters[family]
    images = [np.asarray(_image(seg, i)) for i in range(3)]
    spec = SPECS["negatives"]
    outcomes = list(seg.segment_many(images, spec, batch_size=2, workers=2, deterministic=True))
    for image, outcome in zip(images, outcomes, strict=True):
        assert_same(outcome.result, seg.segment(image, spec))


@pytest.mark.parametrize("case", ["names", "prompts", "thresholds"])
@pytest.mark.parametrize("family", FAMILIES)
def test_segment_torch_is_segment(segmenters, family, case) -> None:
    """At the model's input size (no resizing, where torch's and PIL's resamplers differ)."""
    seg = segmenters[family]
    size = seg.config.image_size
    pixels = random_rgb(size, size, 7)
    spec = SPECS[case]
    batch = seg.segment_torch(torch.from_numpy(pixels).permute(2, 0, 1)[None], spec)
    reference = seg.segment(pixels, spec)
    result = batch.result(0)
    assert_same(result, reference, tolerance=TOLERANCE.get(family, 1e-5))
    assert np.array_equal(batch.label_maps[0].numpy(), result.label_map)


def test_segment_torch_refuses_negatives_with_a_message(segmenters) -> None:
    seg = segmenters["naclip"]
    with pytest.raises(ValueError, match="segment_torch does not take negatives; use segment"):
        seg.segment_torch(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), SPECS["negatives"])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_cli_on_every_family_is_segment(folders, segmenters, family, tmp_path) -> None:
    """`clsclip segment` on each family's folder (the CLIPSeg one as transformers saved it):
    its label maps are `segment`'s, its stored logits within rounding (the CLI encodes every
    prompt and negative in one text batch up front, a product of another size than `segment`'s
    encoding of its own classes)."""
    seg = segmenters[family]
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        _image(seg, i).save(images / f"im{i}.png")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(SPECS["negatives"]), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["segment", str(images), "--classes-file", str(classes), "--model",
                 str(folders[family]), "--out", str(out), "--format", "label", "npz",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0
    for i in range(2):
        reference = seg.segment(images / f"im{i}.png", SPECS["negatives"])
        labels = np.asarray(Image.open(out / f"im{i}_label.png"))
        assert np.array_equal(labels, reference.label_map)
        with np.load(out / f"im{i}.npz") as stored:
            expected = reference.prediction.logits.numpy()
            atol = 1e-5 * max(1.0, float(np.abs(expected).max()))  # CLIPSeg's are in the hundreds
            np.testing.assert_allclose(stored["logits"], expected, rtol=0, atol=atol)


@pytest.mark.parametrize("case", list(SPECS))
@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_is_segment(segmenters, onnx_exports, family, case) -> None:
    pytest.importorskip("onnxruntime")
    seg = segmenters[family]
    runtime = Segmenter.from_pretrained(onnx_exports[family], backend="onnxruntime")
    image, spec, min_score = _image(seg, 0), SPECS[case], _min_score(case)
    reference = seg.segment(image, spec, min_score=min_score)
    tolerance = 10 * TOLERANCE.get(family, 1e-5)  # graphs fuse and order products otherwise
    assert_same(runtime.segment(image, spec, min_score=min_score), reference, tolerance=tolerance)
    mixed = runtime.segment_batch([(image, OTHER_SPEC), (image, spec)], min_score=min_score)
    assert_same(mixed[1], reference, tolerance=tolerance)


SAME_GRAPHS = {"clsclip-calibrated": "clsclip", "naclip-no-background": "naclip"}
"""Families whose graphs are another's: the same network (same seed), what differs lives in the
config, applied outside the graphs (calibration; the background prompts, encoded by the text
graph). Their exports copy the twin's graphs rather than tracing them again; what the export
adds, the config, `export_onnx` writes as always."""


@pytest.fixture(scope="module")
def onnx_exports(segmenters, tmp_path_factory) -> dict[str, Path]:
    """Each family's export, shared (`shared_export`: the ``family-clsclip`` one is also
    tests/backends/test_onnx_format.py's second export, `tiny_segmenter(seed=2)`)."""
    exports = {}
    for name in FAMILIES:
        if name not in SAME_GRAPHS:
            build = lambda seg=segmenters[name]: seg  # noqa: E731
            exports[name] = shared_export(tmp_path_factory, f"family-{name}", build)[0]
    for name, twin in SAME_GRAPHS.items():  # their graphs copied, not traced again
        with pytest.MonkeyPatch.context() as patch:
            copy_graphs_from(patch, exports[twin])
            folder = tmp_path_factory.mktemp(name) / "export"
            exports[name] = segmenters[name].export_onnx(folder)
    return exports


@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_logits_and_crops_equal_torch(segmenters, onnx_exports, family) -> None:
    """Each family's export, beside its answers: its config, class vectors, logits and zoomed
    crops (tests/backends/test_onnx.py checks the other configurations so)."""
    from tests.backends.test_onnx import assert_runtime_agrees

    dense = isinstance(segmenters[family].config, DenseClipConfig)
    assert_runtime_agrees(segmenters[family], onnx_exports[family], 1e-3 if dense else 1e-4)


@pytest.mark.parametrize("family", ["clearclip", "naclip-no-background"])
def test_a_negative_vetoes_its_own_class_only(segmenters, family) -> None:
    """Negatives and extra prompts never enter another class's score, also where classes
    compete (a softmax over the classes)."""
    seg = segmenters[family]
    image = _image(seg, 0)
    plain = seg.segment(image, ["dog", "cat"])
    vetoed = seg.segment(image, {"dog": {"negatives": ["a statue", "a toy"]}, "cat": None})
    np.testing.assert_allclose(vetoed.prob("cat"), plain.prob("cat"), rtol=0, atol=1e-6)
    assert np.array_equal(vetoed.mask("cat"), plain.mask("cat"))
    assert vetoed.mask("dog").sum() <= plain.mask("dog").sum()


_WORDS = ["dog", "Dog", "DOG", "cat", "chien 🐕", "Straße", "STRASSE", "café", "cafe\u0301", "x"]


@st.composite
def _specs(draw):
    """Class specs of 1-3 classes: names with case, Unicode and normalisation variants (CLIP
    reads several as one text), plain or with prompts, negatives and thresholds."""
    names = draw(st.lists(st.sampled_from(_WORDS), min_size=1, max_size=3, unique_by=text_key))
    spec: dict[str, Any] = {}
    for name in names:
        kind = draw(st.sampled_from(["plain", "prompts", "negatives", "threshold"]))
        others = [w for w in _WORDS if text_key(w) != text_key(name)]
        if kind == "plain":
            spec[name] = None
        elif kind == "prompts":
            spec[name] = draw(st.lists(st.sampled_from(others), min_size=1, max_size=2,
                                       unique_by=text_key))  # fmt: skip
        elif kind == "negatives":
            spec[name] = {"negatives": [draw(st.sampled_from(others))]}
        else:
            spec[name] = {"threshold": draw(st.floats(0.05, 0.95))}
    return spec


@pytest.mark.parametrize("family", ["clsclip", "naclip", "naclip-no-background"])
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=_specs(), second=_specs(), min_score=st.sampled_from([None, 0.5]))
def test_generated_specs_batched_together_are_each_alone(
    segmenters, family, first, second, min_score
) -> None:
    """Two generated requests (often the same names with other meanings) in one batch give
    each what it gives alone."""
    seg = segmenters[family]
    image = _image(seg, 0)
    together = seg.segment_batch([(image, first), (image, second)], min_score=min_score)
    for spec, result in zip((first, second), together, strict=True):
        assert_same(result, seg.segment(image, spec, min_score=min_score),
                    tolerance=TOLERANCE.get(family, 1e-5))  # fmt: skip


@pytest.mark.parametrize("family", ["clsclip", "naclip"])
def test_bf16_batched_is_bf16_alone_and_near_fp32(folders, segmenters, family) -> None:
    """bf16 (weights converted, CPUs with AMX or AVX-512 BF16): a request batched with other
    specs is the same request alone within 1e-2; bf16 and fp32 agree within 0.05 (bf16 keeps 8
    bits of mantissa)."""
    from clsclip.backends.precision import cpu_bf16_feature

    if cpu_bf16_feature() is None:
        pytest.skip("this CPU has no native bf16 (bf16 is refused on it, tested elsewhere)")
    bf16 = Segmenter.from_pretrained(folders[family], device="cpu", precision="bf16")
    image = _image(bf16, 0)
    for case in SPECS:  # a request batched with another of other specs: as alone
        alone = bf16.segment(image, SPECS[case])
        mixed = bf16.segment_batch([(image, OTHER_SPEC), (image, SPECS[case])])[1]
        assert_same(mixed, alone, tolerance=1e-2)
    # and near fp32 (not with negatives: a tiny random model's logits tie with its negatives'
    # everywhere, so bf16 rounding flips the veto, 0.5 against 0)
    spec = SPECS["prompts"]
    assert_same(bf16.segment(image, spec), segmenters[family].segment(image, spec),
                tolerance=5e-2)  # fmt: skip
