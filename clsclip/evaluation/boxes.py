"""Ground-truth boxes from a binary mask (the paper's manual-box setting)."""

from __future__ import annotations

import numpy as np


def component_boxes(mask: np.ndarray) -> list[list[int]]:
    """Boxes ``x0, y0, x1, y1`` (exclusive end) of the 8-connected components of a bool mask.

    Works on horizontal runs: runs of consecutive rows that touch (8-connectivity) are joined
    with a union-find, so the cost grows with the number of runs, not of pixels.
    """
    runs: list[tuple[int, int, int]] = []  # (row, start, end) with end exclusive
    row_runs: list[list[int]] = []
    for y, row in enumerate(np.asarray(mask, dtype=bool)):
        padded = np.concatenate([[False], row, [False]])
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        ids = []
        for start, end in zip(edges[::2], edges[1::2], strict=True):
            ids.append(len(runs))
            runs.append((y, int(start), int(end)))
        row_runs.append(ids)
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(1, len(row_runs)):
        for i in row_runs[y]:
            _, s, e = runs[i]
            for j in row_runs[y - 1]:
                _, ps, pe = runs[j]
                if ps <= e and s <= pe:  # overlapping or diagonal neighbours
                    parent[find(i)] = find(j)
    boxes: dict[int, list[int]] = {}
    for i, (y, s, e) in enumerate(runs):
        box = boxes.setdefault(find(i), [s, y, e, y + 1])
        box[0], box[1] = min(box[0], s), min(box[1], y)
        box[2], box[3] = max(box[2], e), max(box[3], y + 1)
    return sorted(boxes.values(), key=lambda b: (b[1], b[0]))
