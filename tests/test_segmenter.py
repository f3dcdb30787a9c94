import numpy as np
import pytest
import torch
from PIL import Image

from clsclip import ClsClipConfig, SegmentationResult, Segmenter
from tests.conftest import random_rgb, tiny_segmenter


@pytest.mark.parametrize("size", [(37, 53), (641, 479), (64, 64), (1, 300)])
def test_shapes_and_dtypes_at_odd_sizes(segmenter, size) -> None:
    result = segmenter.segment(Image.fromarray(random_rgb(*size)), ["dog", "cat", "sky"])
    assert isinstance(result, SegmentationResult)
    assert result.class_names == ["dog", "cat", "sky"]
    assert result.probs.shape == (3, *size) and result.probs.dtype == np.float32
    assert result.masks.shape == (3, *size) and result.masks.dtype == bool
    assert result.label_map.shape == size and np.issubdtype(result.label_map.dtype, np.integer)
    assert result.probs.min() >= 0.0 and result.probs.max() <= 1.0
    assert set(np.unique(result.label_map)) <= {0, 1, 2, 3}


def test_every_input_kind_gives_the_same_result(segmenter, tmp_path) -> None:
    array = random_rgb(37, 53)
    Image.fromarray(array).save(tmp_path / "x.png")
    reference = segmenter.segment(array, ["dog"]).probs
    for source in (Image.fromarray(array), str(tmp_path / "x.png"), tmp_path / "x.png"):
        np.testing.assert_array_equal(segmenter.segment(source, ["dog"]).probs, reference)


def test_class_alone_equals_class_in_a_batch(segmenter) -> None:
    image = random_rgb(50, 70)
    together = segmenter.segment(image, ["dog", "cat", "tree", "road"])
    for k, name in enumerate(together.class_names):
        alone = segmenter.segment(image, [name])
        np.testing.assert_allclose(alone.probs[0], together.probs[k], atol=1e-5)


def test_chunk_size_does_not_change_results() -> None:
    image, names = random_rgb(40, 30), ["a", "b", "c", "d", "e"]
    small, large = tiny_segmenter(), tiny_segmenter()
    small.chunk_size, large.chunk_size = 1, 64
    np.testing.assert_allclose(
        small.segment(image, names).probs, large.segment(image, names).probs, atol=1e-5
    )


def test_lists_of_images(segmenter) -> None:
    images = [random_rgb(30, 40, seed=1), random_rgb(41, 23, seed=2), random_rgb(64, 64, seed=3)]
    segmenter_small = tiny_segmenter()
    segmenter_small.chunk_size = 2  # images split across groups
    results = segmenter_small.segment(images, ["dog", "cat"])
    assert isinstance(results, list) and len(results) == 3
    for image, result in zip(images, results, strict=True):
        assert result.probs.shape == (2, *image.shape[:2])
        np.testing.assert_allclose(
            result.probs, segmenter_small.segment(image, ["dog", "cat"]).probs, atol=1e-5
        )
    assert segmenter.segment((images[0],), ["dog"])[0].probs.shape == (1, 30, 40)
    assert segmenter.segment([], ["dog"]) == []


def test_different_classes_give_different_probabilities(segmenter) -> None:
    image = random_rgb(48, 48)
    result = segmenter.segment(image, ["dog", "airplane"])
    between_classes = np.abs(result.probs[0] - result.probs[1]).max()
    # A random decoder reacts weakly, but far above the float noise of batching.
    noise = np.abs(segmenter.segment(image, ["airplane"]).probs[0] - result.probs[1]).max()
    assert between_classes > 1e-5 and between_classes > 100 * noise


def test_threshold_override(segmenter) -> None:
    image = random_rgb(32, 32)
    low = segmenter.segment(image, ["dog"], threshold=0.0)
    high = segmenter.segment(image, ["dog"], threshold=1.0)
    assert low.masks.all() and not high.masks.any()
    assert low.threshold == 0.0


def test_text_vectors_are_cached(monkeypatch) -> None:
    seg = tiny_segmenter()
    calls: list[int] = []
    original = seg.model.backbone.encode_text
    monkeypatch.setattr(
        seg.model.backbone, "encode_text", lambda ids: calls.append(len(ids)) or original(ids)
    )
    first = seg.encode_classes(["dog", "cat"])
    second = seg.encode_classes(["cat", "dog", "bird"])
    assert calls == [2, 1]  # the second call encodes only "bird"
    torch.testing.assert_close(second[0], first[1])
    assert first.shape == (2, 32)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(2))


def test_prompt_templates_are_averaged() -> None:
    seg = tiny_segmenter(prompt_templates=("a photo of a {}.", "a drawing of a {}."))
    model = seg.model
    with torch.no_grad():
        ids = model.tokenizer(["a photo of a dog.", "a drawing of a dog."])
        single = torch.nn.functional.normalize(model.backbone.encode_text(ids), dim=-1)
    expected = torch.nn.functional.normalize(single.mean(0), dim=0)
    torch.testing.assert_close(seg.encode_classes(["dog"])[0], expected)


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        ([], ValueError, "class_names is empty"),
        ("dog", TypeError, r"single string 'dog'; pass \['dog'\]"),
        (
            ["dog", 3],
            TypeError,
            r"class names must be str \(or class specs\), got int 3 at position 1",
        ),
        (["dog", "  "], ValueError, "class name at position 1 is empty"),
        (["dog", "cat", "Dog "], ValueError, "duplicate class name 'Dog ' at positions 0 and 2"),
        (
            None,
            TypeError,
            r"class_names must be a list of strings \(or class specs\), got NoneType",
        ),
    ],
)
def test_bad_class_names(segmenter, names, error, message) -> None:
    with pytest.raises(error, match=message):
        segmenter.segment(random_rgb(8, 8), names)


def test_bad_images(segmenter, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found"):
        segmenter.segment(tmp_path / "nope.jpg", ["dog"])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(OSError, match="cannot decode image file"):
        segmenter.segment(tmp_path / "bad.jpg", ["dog"])
    with pytest.raises(ValueError, match="zero size"):
        segmenter.segment(np.zeros((0, 5, 3), np.uint8), ["dog"])
    with pytest.raises(ValueError, match="shape H x W x 3"):
        segmenter.segment(np.zeros((5, 5), np.uint8), ["dog"])
    with pytest.raises(ValueError, match="dtype uint8"):
        segmenter.segment(np.zeros((5, 5, 3), np.int32), ["dog"])
    with pytest.raises(TypeError, match="got dict"):
        segmenter.segment({"image": 1}, ["dog"])
    with pytest.raises(ValueError, match="threshold"):
        segmenter.segment(random_rgb(8, 8), ["dog"], threshold=-0.1)


@pytest.mark.parametrize(
    ("device", "error", "message"),
    [
        ("gpu", ValueError, "unknown device 'gpu'; use 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ("cuda:99", ValueError, "cuda:99"),
        (3.5, TypeError, "device must be a str or torch.device"),
    ],
)
def test_bad_devices(device, error, message) -> None:
    with pytest.raises(error, match=message):
        tiny_segmenter().to(device)


def test_bad_constructor_arguments(segmenter) -> None:
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        Segmenter(segmenter.model, segmenter.config, chunk_size=0)
    with pytest.raises(
        TypeError,
        match="config must be one of ClsClipConfig, ClipSegConfig, DenseClipConfig; got dict",
    ):
        Segmenter.from_config({"image_size": 64})  # type: ignore[arg-type]


def test_unknown_open_clip_backbone_and_tag() -> None:
    with pytest.raises(ValueError, match=r"unknown open_clip backbone 'ViT-B-61'.*close matches"):
        Segmenter.from_config(ClsClipConfig(backbone="ViT-B-61", pretrained=None), device="cpu")
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'imagenet' .* available: \["):
        Segmenter.from_config(ClsClipConfig(backbone="ViT-B-16", pretrained="imagenet"))


def test_named_backbone_offline_fails_fast_and_clearly() -> None:
    with pytest.raises(OSError, match="could not fetch open_clip weights 'ViT-B-16' / 'openai'"):
        Segmenter.from_config(ClsClipConfig(backbone="ViT-B-16", pretrained="openai"))


def test_repr(segmenter) -> None:
    assert (
        repr(segmenter)
        == "Segmenter(model='clsclip', family='ClsCLIP (trained)', backbone='custom', "
        "image_size=64, backend='torch', device='cpu', precision='fp32')"
    )


def test_segment_torch_matches_segment_without_resizing(segmenter) -> None:
    images = [random_rgb(64, 64, seed=s) for s in range(3)]  # already the input size
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    out = segmenter.segment_torch(batch, ["dog", "cat"])
    assert out.label_maps.shape == (3, 64, 64) and out.label_maps.dtype == torch.int32
    assert out.low_res_logits.shape == (3, 2, 8, 8)
    for b, image in enumerate(images):
        expected = segmenter.segment(image, ["dog", "cat"])
        torch.testing.assert_close(
            out.low_res_logits[b], expected.low_res_logits, atol=1e-5, rtol=0
        )
        np.testing.assert_array_equal(out.label_maps[b].numpy(), expected.label_map)
        np.testing.assert_array_equal(out.result(b).label_map, expected.label_map)
    floats = segmenter.segment_torch(batch.float() / 255, ["dog", "cat"])
    torch.testing.assert_close(floats.low_res_logits, out.low_res_logits, atol=1e-5, rtol=0)


def test_segment_torch_resizes_close_to_pil(segmenter) -> None:
    image = np.array(
        Image.fromarray(random_rgb(20, 30, seed=4)).resize((479, 641), Image.Resampling.BILINEAR)
    )
    out = segmenter.segment_torch(torch.from_numpy(image).permute(2, 0, 1)[None], ["dog"])
    expected = segmenter.segment(image, ["dog"])
    assert out.label_maps.shape == (1, 641, 479)
    probs = out.result(0).probs
    assert np.abs(probs - expected.probs).max() < 0.02


def test_segment_torch_refuses_bad_batches(segmenter) -> None:
    with pytest.raises(ValueError, match=r"B x 3 x H x W with B >= 1, got \(3, 8, 8\)"):
        segmenter.segment_torch(torch.zeros(3, 8, 8), ["dog"])
    with pytest.raises(TypeError, match="uint8 or floating point, got torch.int64"):
        segmenter.segment_torch(torch.zeros(1, 3, 8, 8, dtype=torch.long), ["dog"])
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        segmenter.segment_torch(np.zeros((1, 3, 8, 8)), ["dog"])  # type: ignore[arg-type]


def test_segment_many_streams_any_iterable_in_order(segmenter) -> None:
    """A generator (no length) is streamed, not listed first, in input order, with workers
    too; a bad item is a counted failure as in a list."""
    images = [random_rgb(20 + i, 30, seed=i) for i in range(7)]
    expected = [segmenter.segment(x, ["dog", "cat"]).low_res_logits for x in images]
    pulled: list[int] = []

    def stream():
        for i, image in enumerate(images):
            pulled.append(i)
            yield image if i != 3 else "/nowhere.png"

    outcomes = segmenter.segment_many(stream(), ["dog", "cat"], batch_size=2)
    assert pulled == []  # nothing read before the first outcome is asked for
    first = next(outcomes)
    assert first.index == 0 and len(pulled) < len(images)
    rest = [first, *outcomes]
    assert [o.index for o in rest] == list(range(7)) and not rest[3].ok
    for i in (0, 1, 2, 4, 5, 6):
        torch.testing.assert_close(rest[i].result.low_res_logits, expected[i])
    with_workers = list(
        segmenter.segment_many(iter(images), ["dog", "cat"], batch_size=3, workers=2)
    )
    for outcome, logits in zip(with_workers, expected, strict=True):
        torch.testing.assert_close(outcome.result.low_res_logits, logits)


def test_segment_many_checks_arguments_when_called(segmenter) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        segmenter.segment_many([random_rgb(8, 8)], ["dog"], batch_size=0)
    with pytest.raises(ValueError, match="duplicate class name"):
        segmenter.segment_many(iter([]), ["dog", "Dog"])
    with pytest.raises(ValueError, match="threshold"):
        segmenter.segment_many([], ["dog"], threshold=2.0)


def _close(a: SegmentationResult, b: SegmentationResult) -> None:
    assert a.class_names == b.class_names and a.threshold == b.threshold and a.size == b.size
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    assert a.boxes.keys() == b.boxes.keys()


def test_segment_batch_equals_segment_per_request(segmenter) -> None:
    images = [random_rgb(30, 40, seed=1), random_rgb(41, 23, seed=2), random_rgb(64, 64, seed=3)]
    boxes = {"cat": [[2, 3, 20, 30]]}
    items = [(images[0], ["dog", "cat"]), (images[1], ["sky"]), (images[2], ["cat", "dog", "sea"]),
             (images[0], ["cat"])]  # fmt: skip
    thresholds = [None, 0.3, 0.7, None]
    proposals = [None, None, None, boxes]
    results = segmenter.segment_batch(items, thresholds=thresholds, proposals=proposals)
    assert len(results) == 4
    for (image, names), threshold, source, result in zip(
        items, thresholds, proposals, results, strict=True
    ):
        alone = segmenter.segment(image, names, threshold=threshold, proposals=source)
        _close(result, alone)
    assert results[1].threshold == 0.3 and "cat" in results[3].boxes
    alone = segmenter.segment_batch([items[0]])[0]  # one request: the same computation
    np.testing.assert_array_equal(alone.probs, segmenter.segment(*items[0]).probs)
    assert segmenter.segment_batch([]) == []
    with pytest.raises(ValueError, match="one threshold and one proposal source per item"):
        segmenter.segment_batch(items, thresholds=[0.5])
    with pytest.raises(ValueError, match="not among the classes"):
        segmenter.segment_batch([(images[0], ["dog"])], proposals=[boxes])


def test_segment_batch_keeps_competing_classes_apart() -> None:
    """A training-free dense model scores classes against each other (softmax): requests with
    different class lists must not see each other's classes."""
    from clsclip.config import DenseClipConfig
    from tests.conftest import TINY_BACKBONE

    torch.manual_seed(0)
    config = DenseClipConfig(backbone=TINY_BACKBONE, pretrained=None, image_size=64,
                             window_size=32, window_stride=16)  # fmt: skip
    dense = Segmenter.from_config(config, device="cpu")
    items = [(random_rgb(30, 40, seed=1), ["dog", "cat"]), (random_rgb(50, 20, seed=2), ["sky"]),
             (random_rgb(33, 33, seed=3), ["dog", "cat"])]  # fmt: skip
    for (image, names), result in zip(items, dense.segment_batch(items), strict=True):
        _close(result, dense.segment(image, names))
