"""The network as onnxruntime sessions of an exported folder (see `clsclip.backends.onnx_export`),
behind the pipeline's `clsclip.backends.base.Backend` interface."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clsclip.backends.onnx_format import (
    CLASSES_FILE,
    ONNX_CONFIG,
    VOCABULARY,
    description_config,
    read_description,
)
from clsclip.checks import resolve_device
from clsclip.model.base import all_pairs, run_pairs
from clsclip.model.prompts import combine_prompts, tokenize_prompts
from clsclip.model.scores import ScoringRule
from clsclip.model.windows import SlidingWindows
from clsclip.optional import require
from clsclip.storage.files import write_folder

logger = logging.getLogger(__name__)


TEXT_BATCH = 256
"""Prompts per run of the text graph (its memory grows with the batch)."""


def execution_providers(device: torch.device) -> list[Any]:
    """onnxruntime's providers for a device: the CPU's, or CUDA's on ``cuda[:N]`` where this
    onnxruntime build has it; `ValueError` naming the available ones otherwise."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    ort = require("onnxruntime", purpose="the onnxruntime backend")
    available = ort.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    raise ValueError(
        f"the onnxruntime backend cannot run on {str(device)!r}: this onnxruntime offers "
        f"{available} (for CUDA install onnxruntime-gpu); use device='cpu'"
    )


class OnnxBackend:
    """Text, view and decode graphs run by onnxruntime (see `clsclip.backends.base.Backend`).

    Args:
        folder: the exported folder (its description is read and checked here).
        device: ``cpu`` (default), or ``cuda[:N]`` with onnxruntime-gpu.
        threads: intra-op threads per session (None: torch's thread count in this process, so
            ``torch.set_num_threads`` and ``--threads`` hold for both backends; 0: onnxruntime's
            default, every core).

    Raises:
        FileNotFoundError / ValueError: see `clsclip.backends.onnx_format.read_description`;
            also a graph onnxruntime cannot read, or whose inputs and outputs differ from the
            description, named.
    """

    name = "onnxruntime"

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        device: torch.device | None = None,
        threads: int | None = None,
    ) -> None:
        ort = require("onnxruntime", purpose="the onnxruntime backend")
        from open_clip.tokenizer import SimpleTokenizer

        self.folder = Path(folder)
        description = read_description(self.folder)
        self.config = description_config(description, self.folder / ONNX_CONFIG)
        self.device = device if device is not None else torch.device("cpu")
        providers = execution_providers(self.device)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
        # onnxruntime's threads spin-wait after a run by default, taking the cores from the
        # torch work between runs (the windows' merge, PAMR, the scoring)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions = {
            name: _session(ort, self.folder / graph["file"], options, providers, graph)
            for name, graph in description["graphs"].items()
        }
        self.description = description
        self.precision = str(description.get("precision", "fp32"))
        context = int(description["tokenizer"]["context_length"])
        self.tokenizer = SimpleTokenizer(context_length=context)
        self.prompt_templates = tuple(description["prompt_templates"])
        mean, std = description["image_mean"], description["image_std"]
        self.image_mean = (float(mean[0]), float(mean[1]), float(mean[2]))
        self.image_std = (float(std[0]), float(std[1]), float(std[2]))
        self.image_size = int(description["image_size"])
        self._grid = (int(description["grid"][0]), int(description["grid"][1]))
        self._stored = _stored_vectors(self.folder, description)
        self.scoring = ScoringRule(str(description.get("class_scores", "independent")))
        background = list(description.get("background_prompts", []))
        self._background = self.encode_class_names(background) if background else None
        self._windows: SlidingWindows | None = None
        if "windows" in description:  # training-free: the window network is the views graph
            w = description["windows"]
            self._windows = SlidingWindows(int(w["window"]), int(w["stride"]), int(w["patch"]),
                                           bool(w["pad"]), float(w["logit_scale"]))  # fmt: skip
            self._window_input = (int(w["input"][0]), int(w["input"][1]))
        logger.info("loaded exported clsclip model from %s (onnxruntime)", self.folder)

    @classmethod
    def load(
        cls, source: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> OnnxBackend:
        return cls(source, device=None if device is None else resolve_device(device))

    def grid_for(self, image_size: int) -> tuple[int, int]:
        if image_size != self.image_size:
            raise ValueError(f"this export takes {self.image_size} px inputs, got {image_size}")
        return self._grid

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        """Vectors of names stored with the export (``classes.npz``) as they are; the others
        through ``text.onnx``."""
        names = list(names)
        todo = [n for n in dict.fromkeys(names) if n not in self._stored]
        found = dict(self._stored)
        if todo:
            ids = tokenize_prompts(self.tokenizer, self.prompt_templates, todo).numpy()
            # a bounded batch per run: 150 names x 80 templates at once took 24 GB
            raw = np.concatenate([
                self.sessions["text"].run(None, {"token_ids": part.astype(np.int64)})[0]
                for part in np.array_split(ids, max(1, -(-len(ids) // TEXT_BATCH)))
            ])  # fmt: skip
            vectors = torch.from_numpy(raw).reshape(len(todo), len(self.prompt_templates), -1)
            combined = combine_prompts(vectors, normalize=self.description["text_normalize"])
            found.update(zip(todo, combined, strict=True))
        return torch.stack([found[n] for n in names])

    def _encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.sessions["views"].run(None, {"pixels": pixels.float().cpu().numpy()})
        return [torch.from_numpy(x) for x in outputs]

    def _decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        feed = {f"rows_{i}": x.cpu().numpy() for i, x in enumerate(shared)}
        feed["class_vectors"] = text.float().cpu().numpy()
        (logits,) = self.sessions["decode"].run(None, feed)
        return torch.from_numpy(logits)

    def predict_pairs(
        self, pixels: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        if self._windows is not None:
            grid = (int(pixels.shape[-2]), int(pixels.shape[-1]))
            return run_pairs(self._encode_windows, self._merge_windows, pixels, text, pairs,
                             grid, chunk_size=chunk_size)  # fmt: skip
        grid = self.grid_for(pixels.shape[-1])
        return run_pairs(
            self._encode_views, self._decode_rows, pixels, text, pairs, grid, chunk_size=chunk_size
        )

    def _encode_windows(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The sliding windows of views through the views graph (`SlidingWindows.encode`)."""
        assert self._windows is not None
        size = self._windows.input_size(pixels.shape[-2], pixels.shape[-1])
        if size != self._window_input:
            raise ValueError(
                f"this export runs {self._window_input[0]} x {self._window_input[1]} px windows; "
                f"a {pixels.shape[-2]} x {pixels.shape[-1]} px view has {size[0]} x {size[1]} px "
                "windows (a side shorter than the window: an image whose long side was capped "
                "at 2048 px); segment it with the torch model"
            )
        return [self._windows.encode(pixels, lambda x: self._encode_views(x)[0])]

    def _merge_windows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Rows ``P x n x T x E`` of window features: cosines by the decode graph (a row per
        window), then the merge (`SlidingWindows.merge`)."""
        assert self._windows is not None
        features = shared[0]
        count, windows = features.shape[0], features.shape[1]
        flat = features.reshape(count * windows, *features.shape[2:])
        cosines = self._decode_rows([flat], text.repeat_interleave(windows, dim=0), grid)
        return self._windows.merge(cosines.reshape(count, windows, -1), grid)

    def background_vectors(self) -> torch.Tensor:
        if self._background is None:  # no rows: their width is never read
            return torch.zeros(0, 0)
        return self._background

    def predict_logits(
        self, pixels: torch.Tensor, text: torch.Tensor, *, chunk_size: int
    ) -> torch.Tensor:
        pairs = all_pairs(pixels.shape[0], text.shape[0], torch.device("cpu"))
        logits = self.predict_pairs(pixels, text, pairs, chunk_size=chunk_size)
        return logits.reshape(pixels.shape[0], text.shape[0], *logits.shape[-2:])

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        with torch.inference_mode():
            yield

    def to(self, device: str | torch.device) -> None:
        target = resolve_device(device)
        if target != self.device:
            providers = execution_providers(target)
            for session in self.sessions.values():
                session.set_providers(providers)
            self.device = target

    def save_pretrained(
        self, folder: str | os.PathLike[str], *, include_backbone: bool | None = None
    ) -> Path:
        """A copy of the export (graphs, description, vocabulary, stored classes), written as
        one unit like every model folder; load it with ``backend="onnxruntime"``. The
        description holds this segmenter's config (a calibrated one, say)."""
        target = Path(folder)
        description = {**self.description, "config": self.config.to_dict()}
        if target.resolve() == self.folder.resolve():
            if description != self.description:
                write_folder(target, lambda tmp: _write_description(tmp, description),
                             replaces={ONNX_CONFIG})  # fmt: skip
            return target
        names = [
            ONNX_CONFIG,
            VOCABULARY,
            CLASSES_FILE,
            *(g["file"] for g in self.description["graphs"].values()),
        ]

        def copy(tmp: Path) -> None:
            for name in names[1:]:
                if (self.folder / name).is_file():
                    shutil.copy2(self.folder / name, tmp / name)
            _write_description(tmp, description)

        write_folder(target, copy, replaces=set(names))
        return target

    def export_onnx(
        self,
        out_dir: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None,
        opset: int | None,
        int8: bool,
    ) -> Path:
        raise RuntimeError(
            "this segmenter already runs an ONNX export; copy it with save_pretrained(folder), "
            "or export from the torch model (backend='torch')"
        )


def _session(
    ort: Any, path: Path, options: Any, providers: list[Any], graph: dict[str, Any]
) -> Any:
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ValueError(f"{path} is not an ONNX graph onnxruntime can load: {e}") from e
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != graph["inputs"] or outputs != graph["outputs"]:
        raise ValueError(
            f"{path} takes {inputs} and gives {outputs}, but {ONNX_CONFIG} says {graph['inputs']} "
            f"and {graph['outputs']}: graphs from another export; export again"
        )
    return session


def _stored_vectors(folder: Path, description: dict[str, Any]) -> dict[str, torch.Tensor]:
    name = description.get("classes_file")
    if not name:
        return {}
    try:
        with np.load(folder / str(name), allow_pickle=False) as data:
            names = [str(n) for n in data["names"]]
            vectors = torch.from_numpy(np.asarray(data["vectors"], dtype=np.float32))
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{folder / str(name)} is not the class file of this export: {e}") from e
    if vectors.ndim != 2 or len(names) != vectors.shape[0] or not torch.isfinite(vectors).all():
        raise ValueError(f"{folder / str(name)} holds no finite vector per stored class name")
    return dict(zip(names, vectors, strict=True))


def _write_description(folder: Path, description: dict[str, Any]) -> None:
    (folder / ONNX_CONFIG).write_text(json.dumps(description, indent=2), encoding="utf-8")
