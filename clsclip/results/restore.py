"""From network output to original pixels: letterbox inverse, crop paste, fusion, tiling.

Every prediction starts as logits on the patch grid of a square, letterboxed view (the whole
image, or one ClsCLIP+ crop). The way back is linear and separable: bilinear upsampling to the
input size, the padding cropped away, bilinear resizing to the original size (both
``align_corners=False``, as `torch.nn.functional.interpolate`). So each axis is one small matrix
(``H x g`` and ``W x g``, g the grid side), and any band of output rows of K classes is two
matrix products of the ``K x g x g`` logits: full-resolution maps are computed a band at a time,
never all K at once, on whatever device the logits live.

Fusion (ClsCLIP+) works on logits: sigmoid is monotonic, so the maximum of logits is the
maximum of probabilities, and a threshold on probabilities is one on logits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from clsclip.geometry import Letterbox
from clsclip.model.scores import softmax_logits
from clsclip.results.prediction import CropLogits, LowResPrediction, calibrate

BAND_BYTES = 32 * 2**20
"""Working-set size of one band of full-resolution logits (all classes of a chunk)."""

_CACHE_BYTES = 256 * 2**20


def axis_weights(grid: int, input_size: int, resized: int, original: int) -> torch.Tensor:
    """float64 ``original x grid``: one axis of the way from the patch grid to the image.

    Row o holds the weights of the grid cells that output pixel o mixes: bilinear upsampling from
    ``grid`` to ``input_size``, the first ``resized`` pixels kept (the image; the rest is padding),
    bilinear resizing to ``original``.
    """
    weights = _resize_rows(torch.eye(grid, dtype=torch.float64), input_size)[:resized]
    return _resize_rows(weights, original)


def _resize_rows(matrix: torch.Tensor, out_size: int) -> torch.Tensor:
    """Bilinear resizing of the rows of ``matrix``, with `F.interpolate`'s source coordinate
    ``(o + 0.5) * in / out - 0.5`` clamped at 0 (align_corners=False, no antialiasing)."""
    in_size = matrix.shape[0]
    if in_size == out_size:
        return matrix
    positions = torch.arange(out_size, dtype=torch.float64)
    source = ((positions + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    lower = source.floor().long().clamp(max=in_size - 1)
    upper = (lower + 1).clamp(max=in_size - 1)
    weight = (source - lower)[:, None]
    return matrix[lower] * (1.0 - weight) + matrix[upper] * weight


class _GridToImage:
    """The way back for one letterboxed view: row and column matrices, or a plain slice when the
    logits are already at the original size."""

    def __init__(self, grid: tuple[int, int], box: Letterbox, device: torch.device) -> None:
        (height, width), (resized_h, resized_w) = box.original_size, box.resized_size
        self.rows: torch.Tensor | None = None
        self.cols_t: torch.Tensor | None = None
        # Logits already at the image's own size (`SegmentationResult.from_probs`): no resizing.
        if not grid == box.original_size == box.resized_size:
            input_h, input_w = box.input_shape
            rows = axis_weights(grid[0], input_h, resized_h, height)
            cols = axis_weights(grid[1], input_w, resized_w, width)
            self.rows = rows.to(device, torch.float32)
            self.cols_t = cols.T.contiguous().to(device, torch.float32)
        self.width = width

    def columns(self, logits: torch.Tensor) -> torch.Tensor:
        """``... x g x g`` -> ``... x g x W``: the column half of the way back."""
        return logits if self.cols_t is None else logits @ self.cols_t

    def rows_of(self, columns: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the output from `columns` output: ``... x T x W``."""
        if self.rows is None:
            return columns[..., start:stop, : self.width]
        return self.rows[start:stop] @ columns


class FullResolution:
    """Full-resolution logits of a `LowResPrediction`, a band of rows at a time.

    Args:
        prediction: the network's output for one image.
        band_bytes: the working-set size of one band (all classes of a chunk); peak memory of
            every method below is a few times this, plus its own output.
    """

    def __init__(self, prediction: LowResPrediction, *, band_bytes: int = BAND_BYTES) -> None:
        self.prediction = prediction
        self.height, self.width = prediction.letterbox.original_size
        logits = prediction.logits.float()
        self._logits = logits
        self._view = _GridToImage(
            (logits.shape[1], logits.shape[2]), prediction.letterbox, logits.device
        )
        self._band_bytes = band_bytes
        self._per_class = 4 * self.width * max(logits.shape[1], 1)
        self.class_chunk = max(1, min(prediction.num_classes, band_bytes // self._per_class))
        self._columns: dict[tuple[int | str, ...], torch.Tensor] = {}
        self._cache_columns = prediction.num_classes * self._per_class <= _CACHE_BYTES
        crops = prediction.crops
        self._crop_top = np.array([c.region[1] for c in crops], dtype=np.int64)
        self._crop_bottom = np.array([c.region[3] for c in crops], dtype=np.int64)
        self._crop_class = np.array([c.class_index for c in crops], dtype=np.int64)
        self._rows = 0 if prediction.rows is None else int(prediction.rows.shape[0])
        self._scored: tuple[int, int, torch.Tensor, torch.Tensor | None] | None = None

    def chunks(self, classes: Sequence[int] | None = None) -> list[list[int]]:
        """``classes`` (default all) split into chunks whose bands fit the working set."""
        indices = list(range(self.prediction.num_classes)) if classes is None else list(classes)
        return [indices[i : i + self.class_chunk] for i in range(0, len(indices), self.class_chunk)]

    def row_bands(self, num_classes: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges whose bands of ``num_classes`` fit the working set."""
        maps = max(1, num_classes, self._rows)  # scored rows are all in each band
        rows = max(1, self._band_bytes // (4 * self.width * maps))
        for start in range(0, self.height, rows):
            yield start, min(self.height, start + rows)

    def band(self, classes: Sequence[int], start: int, stop: int) -> torch.Tensor:
        """float32 ``len(classes) x (stop - start) x W``: logits of rows ``start:stop``, crops
        fused, negatives applied, calibrated."""
        out = self._fused(classes, start, stop)
        prediction = self.prediction
        if prediction.negatives is not None:
            out = self._negatives_applied(out, classes, start, stop)
        return calibrate(out, prediction.scale, prediction.bias, classes)

    def _negatives_applied(
        self, out: torch.Tensor, classes: Sequence[int], start: int, stop: int
    ) -> torch.Tensor:
        owners = self.prediction.negative_of
        wanted = [i for i, k in enumerate(owners) if k in set(classes)]
        if not wanted:
            return out
        position = {k: i for i, k in enumerate(classes)}
        key: tuple[int | str, ...] = ("negatives", *wanted)
        columns = self._columns.get(key)
        if columns is None:
            assert self.prediction.negatives is not None
            index = torch.as_tensor(wanted, device=self._logits.device)
            columns = self._view.columns(self.prediction.negatives.float()[index])
            if self._cache_columns and self._view.cols_t is not None:
                self._columns[key] = columns
        negatives = self._view.rows_of(columns, start, stop)
        out = out.clone()
        for j, i in enumerate(wanted):
            target = out[position[owners[i]]]
            target.masked_fill_(negatives[j] > target, -math.inf)
        return out

    def _scored_band(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits ``K x T x W`` and background ``T x W`` of rows ``start:stop`` scored
        from the prediction's rows after the way back (the last band is kept)."""
        if self._scored is not None and self._scored[:2] == (start, stop):
            return self._scored[2], self._scored[3]
        prediction = self.prediction
        assert prediction.rows is not None
        columns = self._columns.get(("rows",))
        if columns is None:
            columns = self._view.columns(prediction.rows.float())
            if self._cache_columns and self._view.cols_t is not None:
                self._columns[("rows",)] = columns
        band = self._view.rows_of(columns, start, stop)
        owners = prediction.row_of
        mine = [r for r, k in enumerate(owners) if k >= 0]
        others = [r for r, k in enumerate(owners) if k < 0]
        logits, floor = softmax_logits(
            band[mine], [owners[r] for r in mine], prediction.num_classes, band[others]
        )
        self._scored = (start, stop, logits, floor)
        return logits, floor

    def _fused(self, classes: Sequence[int], start: int, stop: int) -> torch.Tensor:
        if self._rows:
            picked = torch.as_tensor(list(classes), device=self._logits.device)
            out = self._scored_band(start, stop)[0][picked]
        else:
            out = self._view.rows_of(self._columns_of(classes), start, stop)
        crops = self._crops_in(classes, start, stop)
        if not crops:
            return out
        out = out.clone() if self._view.rows is None else out
        position = {k: i for i, k in enumerate(classes)}
        if self.prediction.fusion == "max":
            for crop in crops:
                top, piece, x0, x1 = self._crop_piece(crop, start, stop)
                target = out[position[crop.class_index], top : top + piece.shape[0], x0:x1]
                torch.maximum(target, piece, out=target)
            return out
        zoomed = torch.full_like(out, -math.inf)
        covered = torch.zeros(out.shape, dtype=torch.bool, device=out.device)
        for crop in crops:
            top, piece, x0, x1 = self._crop_piece(crop, start, stop)
            index = position[crop.class_index]
            rows = slice(top, top + piece.shape[0])
            target = zoomed[index, rows, x0:x1]
            torch.maximum(target, piece, out=target)
            covered[index, rows, x0:x1] = True
        return torch.where(covered, zoomed, out)

    def class_logits(self, class_index: int) -> torch.Tensor:
        """float32 ``H x W``: the fused logits of one class."""
        return self._one_class(class_index, torch.float32, None)

    def class_mask(self, class_index: int, threshold: float) -> torch.Tensor:
        """bool ``H x W``: the fused logits of one class above ``threshold`` (a logit) and above
        the background (`LowResPrediction.background`), with no full-resolution float map."""
        return self._one_class(class_index, torch.bool, threshold)

    def background_band(self, start: int, stop: int) -> torch.Tensor | None:
        """float32 ``(stop - start) x W``: the background's logits on those rows (None: no
        background)."""
        if self._rows:
            return self._scored_band(start, stop)[1]
        background = self.prediction.background
        if background is None:
            return None
        columns = self._columns.get(("background",))
        if columns is None:
            columns = self._view.columns(background.float()[None])
            if self._cache_columns and self._view.cols_t is not None:
                self._columns[("background",)] = columns
        return self._view.rows_of(columns, start, stop)[0]

    def _one_class(self, k: int, dtype: torch.dtype, threshold: float | None) -> torch.Tensor:
        out = torch.empty(self.height, self.width, dtype=dtype, device=self._logits.device)
        for start, stop in self.row_bands(1):
            band = self.band([k], start, stop)[0]
            if threshold is None:
                out[start:stop] = band
                continue
            above = band > threshold
            floor = self.background_band(start, stop)
            out[start:stop] = above if floor is None else above & (band > floor)
        return out

    def label_map(
        self, threshold: float | Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass over every class: the label map and per-class statistics.

        Args:
            threshold: on logits (see `threshold_logit`): one for every class, or one per class.

        Returns:
            int32 ``H x W`` labels (0 background, k + 1 where class k is above its threshold
            and has the largest logit of the classes above theirs; ties go to the lower k),
            int64 ``K`` pixel counts above the threshold, and float32 ``K`` largest logits.
        """
        device, num_classes = self._logits.device, self.prediction.num_classes
        per_class: torch.Tensor | None = None
        uniform = 0.0
        if isinstance(threshold, (int, float)):
            uniform = float(threshold)
        else:
            per_class = torch.as_tensor(list(threshold), dtype=torch.float32, device=device)
            if per_class.shape != (num_classes,):
                raise ValueError(f"give one threshold per class ({num_classes})")
        labels = torch.empty(self.height, self.width, dtype=torch.int32, device=device)
        areas = torch.zeros(num_classes, dtype=torch.int64, device=device)
        peaks = torch.full((num_classes,), -math.inf, device=device)
        chunks = self.chunks()
        for start, stop in self.row_bands(self.class_chunk):
            floor = self.background_band(start, stop)
            if num_classes == 1:  # no competition between classes: the mask is the label map
                logits = self.band([0], start, stop)[0]
                above = logits > (uniform if per_class is None else per_class[0])
                if floor is not None:
                    above &= logits > floor
                areas += above.float().sum().long()
                peaks = torch.maximum(peaks, logits.amax())
                labels[start:stop] = above
                continue
            best: torch.Tensor | None = None
            best_index = torch.zeros(0, device=device)
            for chunk in chunks:
                logits = self.band(chunk, start, stop)
                cut: float | torch.Tensor = uniform
                if per_class is not None:
                    cut = per_class[chunk[0] : chunk[-1] + 1].reshape(-1, 1, 1)
                above_cells = logits > cut
                if floor is not None:
                    above_cells &= logits > floor
                # A band holds < 2**24 values per class, so float32 counts are exact.
                areas[chunk[0] : chunk[-1] + 1] += above_cells.float().sum(dim=(1, 2)).long()
                peak = logits.amax(dim=(1, 2))
                peaks[chunk[0] : chunk[-1] + 1] = torch.maximum(
                    peaks[chunk[0] : chunk[-1] + 1], peak
                )
                if per_class is not None or floor is not None:  # only classes in their mask
                    logits = torch.where(above_cells, logits, -math.inf)
                value, index = _best_class(logits)
                if best is None:
                    best, best_index = value, index + chunk[0]
                else:
                    better = value > best
                    best = torch.where(better, value, best)
                    best_index = torch.where(better, index + chunk[0], best_index)
            assert best is not None
            found = best > (uniform if per_class is None and floor is None else -math.inf)
            labels[start:stop] = torch.where(found, best_index + 1, 0).to(torch.int32)
        return labels, areas, peaks

    def area_dropped(self) -> list[int]:
        """The classes `LowResPrediction.area_threshold` drops: those whose pixels in the label
        map without thresholds (the most probable class, background included) are at most that
        share of all the pixels given to a class (SC-CLIP's ``area_thd``)."""
        limit = self.prediction.area_threshold
        if limit is None:
            return []
        labels = self.label_map(-math.inf)[0]
        counts = torch.bincount(labels.flatten().long(), minlength=self.prediction.num_classes + 1)
        counts = counts[1:].double()
        return [int(k) for k in torch.nonzero(counts <= limit * counts.sum()).flatten()]

    def _columns_of(self, classes: Sequence[int]) -> torch.Tensor:
        key = tuple(classes)
        cached = self._columns.get(key)
        if cached is not None:
            return cached
        index = torch.as_tensor(key, device=self._logits.device)
        columns = self._view.columns(self._logits[index])
        if self._cache_columns and self._view.cols_t is not None:
            self._columns[key] = columns
        return columns

    def _crops_in(self, classes: Sequence[int], start: int, stop: int) -> list[CropLogits]:
        if not len(self._crop_top):
            return []
        hit = (self._crop_top < stop) & (self._crop_bottom > start)
        hit &= np.isin(self._crop_class, np.asarray(classes))
        return [self.prediction.crops[i] for i in np.flatnonzero(hit)]

    def _crop_piece(
        self, crop: CropLogits, start: int, stop: int
    ) -> tuple[int, torch.Tensor, int, int]:
        """A crop's logits on the rows it shares with ``start:stop``: (first row in the band,
        ``T' x (x1 - x0)`` logits, x0, x1)."""
        x0, y0, x1, y1 = crop.region
        grid = (int(crop.logits.shape[0]), int(crop.logits.shape[1]))
        view = _GridToImage(grid, crop.letterbox, crop.logits.device)
        first, last = max(start, y0), min(stop, y1)
        piece = view.rows_of(view.columns(crop.logits.float()), first - y0, last - y0)
        return first - start, piece, x0, x1


def _best_class(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest value over the first axis and its index (ties to the lower index).

    On the CPU a loop of element-wise steps is about twice as fast as ``max(dim=0)``; on a GPU
    the single reduction wins.
    """
    if logits.device.type != "cpu":
        value, index = logits.max(dim=0)
        return value, index.to(torch.int32)
    best = logits[0].clone()
    index = torch.zeros(logits.shape[1:], dtype=torch.int32)
    for k in range(1, logits.shape[0]):
        better = logits[k] > best
        torch.maximum(best, logits[k], out=best)
        index.masked_fill_(better, k)
    return best, index
