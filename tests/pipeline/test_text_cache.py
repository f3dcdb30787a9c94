"""The class-vector cache: bounded, any number of names per call, shared by threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch
from PIL import Image

from clsclip.pipeline.text_cache import DEFAULT_ENTRIES, TextCache
from clsclip.proposals import LabelMatcher, YoloProposer
from clsclip.proposals.base import Proposals
from tests.conftest import random_rgb, tiny_segmenter


def _encoder(calls: list[list[str]]):
    def encode(names: list[str]) -> torch.Tensor:
        calls.append(list(names))
        return torch.stack([torch.tensor([float(len(n)), float(sum(map(ord, n)))]) for n in names])

    return encode


def test_one_call_may_ask_for_more_names_than_the_cache_keeps() -> None:
    calls: list[list[str]] = []
    cache = TextCache(_encoder(calls), max_entries=4)
    names = [f"name {i}" for i in range(10)]
    torch.testing.assert_close(cache.get(names), _encoder([])(names))
    assert len(cache) == 4 and calls == [names]
    cache.get(names[-4:])  # the most recently used are kept: no new encoding
    assert len(calls) == 1
    cache.get(["name 0"])
    assert calls[-1] == ["name 0"]


def test_repeated_names_and_spaces_are_one_entry() -> None:
    calls: list[list[str]] = []
    cache = TextCache(_encoder(calls), max_entries=8)
    out = cache.get(["dog", " dog ", "cat", "dog"])
    assert calls == [["dog", "cat"]] and out.shape == (4, 2)
    torch.testing.assert_close(out[0], out[1])


def test_segmenter_takes_more_names_than_the_default_cache_in_one_call(segmenter) -> None:
    names = [f"thing {i}" for i in range(DEFAULT_ENTRIES + 100)]
    vectors = segmenter.encode_classes(names)
    assert vectors.shape == (len(names), 32)
    torch.testing.assert_close(vectors[-1:], segmenter.encode_classes(names[-1:]))
    torch.testing.assert_close(vectors[:1], segmenter.encode_classes(names[:1]), atol=1e-6, rtol=0)


class _Boxes:
    def __init__(self, xyxy: torch.Tensor, conf: torch.Tensor, cls: torch.Tensor) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls

    def __len__(self) -> int:
        return len(self.cls)


class _Result:
    def __init__(self, boxes: _Boxes, names: dict[int, str]) -> None:
        self.boxes, self.names = boxes, names


class YOLOWorld:
    """A stand-in for an open-vocabulary ultralytics model: ``predict`` labels one box with
    each class of the vocabulary set last, and takes its time, so that a vocabulary changed by
    another thread mid-call would show."""

    def __init__(self) -> None:
        self.classes: list[str] = []

    def set_classes(self, classes: list[str]) -> None:
        self.classes = list(classes)

    def predict(self, image: Image.Image, **kwargs: object) -> list[_Result]:
        vocabulary = list(self.classes)
        time.sleep(0.002)
        assert vocabulary == self.classes, "the vocabulary changed during a call"
        n = len(vocabulary)
        xyxy = torch.tensor([[2.0 * k, 2.0 * k, 10.0 + 2 * k, 12.0 + 2 * k] for k in range(n)])
        boxes = _Boxes(xyxy.reshape(n, 4), torch.ones(n), torch.arange(n).float())
        return [_Result(boxes, dict(enumerate(vocabulary)))]


def _run_threads(work, count: int) -> list:
    results: list = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


def test_open_vocabulary_detector_keeps_each_calls_vocabulary() -> None:
    proposer = YoloProposer(YOLOWorld(), conf=0.0)
    assert proposer.open_vocabulary
    image = Image.fromarray(random_rgb(40, 40))
    lists = [[f"class {i}", f"other {i}"] for i in range(8)]
    found: list[Proposals] = _run_threads(lambda i: proposer.propose(image, lists[i % 8] * 1), 32)
    for i, proposals in enumerate(found):
        assert proposals.labels == lists[i % 8]


def test_concurrent_calls_equal_the_serial_results() -> None:
    """8 threads, each with its own class list, with YOLO proposals (a random-weight detector
    with conf 0, so every call has boxes): every result equals the serial one."""
    seg = tiny_segmenter()
    seg.matcher = LabelMatcher(class_agnostic=True)
    seg.proposer = YoloProposer("yolov8n.yaml", conf=0.0, imgsz=96, device="cpu", max_det=3)
    images = [random_rgb(40 + 3 * i, 50, seed=i) for i in range(8)]
    lists = [[f"thing {i}", f"stuff {i}", "dog"][: 1 + i % 3] for i in range(8)]
    serial = [seg.segment(images[i], lists[i]) for i in range(8)]
    seg._text.clear()  # the threads fill the cache concurrently
    parallel = _run_threads(lambda i: seg.segment(images[i % 8], lists[i % 8]), 16)
    for i, result in enumerate(parallel):
        expected = serial[i % 8]
        assert result.class_names == expected.class_names
        torch.testing.assert_close(result.low_res_logits, expected.low_res_logits)
        assert set(result.boxes) == set(expected.boxes)
        for name in expected.boxes:
            np.testing.assert_array_equal(result.boxes[name], expected.boxes[name])
        assert len(result.crops) == len(expected.crops) > 0
