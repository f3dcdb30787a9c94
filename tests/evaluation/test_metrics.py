import numpy as np
import pytest

from clsclip.evaluation import EpisodicIoU, component_boxes


def test_hand_computed_case() -> None:
    scores = EpisodicIoU([1, 2])
    target = np.array([[1, 1, 0, 0], [0, 0, 0, 255]], np.uint8)
    pred = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], bool)  # the ignored pixel does not count
    scores.update(1, pred, target)
    assert scores.class_iou()[1] == pytest.approx(1 / 3)  # I = 1, U = 3
    assert np.isnan(scores.class_iou()[2])
    assert scores.miou() == pytest.approx(1 / 3)
    # background: true bg = 5 pixels (excluding ignore), predicted bg = 5; I = 4, U = 6
    assert scores.fb_iou() == pytest.approx((4 / 6 + 1 / 3) / 2)


def test_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    scores = EpisodicIoU([3, 4, 5])
    episodes = []
    for _ in range(30):
        c = int(rng.integers(3, 6))
        shape = tuple(rng.integers(5, 20, 2))
        target = rng.choice([0, 1, 255], size=shape, p=[0.5, 0.4, 0.1]).astype(np.uint8)
        pred = rng.random(shape) < 0.5
        scores.update(c, pred, target)
        episodes.append((c, pred, target))
    for c in (3, 4, 5):
        pixels = [(p[t != 255], t[t != 255] == 1) for k, p, t in episodes if k == c]
        inter = sum((p & t).sum() for p, t in pixels)
        union = sum((p | t).sum() for p, t in pixels)
        assert scores.class_iou()[c] == pytest.approx(inter / union)
    allp = np.concatenate([p[t != 255] for _, p, t in episodes])
    allt = np.concatenate([t[t != 255] == 1 for _, _, t in episodes])
    fg = (allp & allt).sum() / (allp | allt).sum()
    bg = (~allp & ~allt).sum() / (~allp | ~allt).sum()
    assert scores.fb_iou() == pytest.approx((fg + bg) / 2)
    assert scores.miou() == pytest.approx(np.mean(list(scores.class_iou().values())))


def test_update_checks() -> None:
    scores = EpisodicIoU([1])
    with pytest.raises(KeyError, match="class 2 is not evaluated"):
        scores.update(2, np.zeros((2, 2), bool), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="differ"):
        scores.update(1, np.zeros((2, 2), bool), np.zeros((3, 2), np.uint8))


def _flood_boxes(mask: np.ndarray) -> list[list[int]]:
    seen, boxes = np.zeros_like(mask, bool), []
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        stack, pts = [(y, x)], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            pts.append((cy, cx))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if (
                        0 <= ny < mask.shape[0]
                        and 0 <= nx < mask.shape[1]
                        and mask[ny, nx]
                        and not seen[ny, nx]
                    ):
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        ys, xs = zip(*pts, strict=True)
        boxes.append([min(xs), min(ys), max(xs) + 1, max(ys) + 1])
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def test_component_boxes_match_flood_fill() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        mask = rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < 0.3
        assert sorted(component_boxes(mask)) == sorted(_flood_boxes(mask))
    assert component_boxes(np.zeros((3, 3), bool)) == []
