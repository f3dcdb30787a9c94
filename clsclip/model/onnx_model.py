"""The network as onnxruntime sessions of an exported folder (see `clsclip.export`), behind the
same interface the pipeline uses for torch models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clsclip.model.base import SegmentationModel

ONNX_CONFIG = "clsclip-onnx.json"
INSTALL_HINT = 'the onnxruntime backend needs: pip install "clsclip[onnx]"'


def read_description(folder: str | Path) -> dict[str, Any]:
    """The ``clsclip-onnx.json`` of an exported folder; `FileNotFoundError` if there is none."""
    path = Path(folder) / ONNX_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not an exported clsclip model: no {ONNX_CONFIG} (export one with "
            "clsclip export MODEL --out DIR)"
        )
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != "clsclip-onnx" or data.get("format_version") != 1:
        raise ValueError(f"{path} is not a clsclip-onnx format 1 description")
    return data


class OnnxModel(SegmentationModel):
    """Text, view and decode graphs run by onnxruntime on the CPU (or ``providers``).

    Args:
        folder: the exported folder.
        description: its ``clsclip-onnx.json``.
        providers: onnxruntime execution providers (default: the CPU's).
        threads: intra-op threads per session (0: onnxruntime's default).
    """

    def __init__(
        self,
        folder: str | Path,
        description: dict[str, Any],
        *,
        providers: Sequence[str] | None = None,
        threads: int = 0,
    ) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        from open_clip.tokenizer import SimpleTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        chosen = list(providers or ["CPUExecutionProvider"])
        self.sessions = {
            name: ort.InferenceSession(str(Path(folder) / graph["file"]), options, providers=chosen)
            for name, graph in description["graphs"].items()
        }
        self.description = description
        self.tokenizer = SimpleTokenizer(context_length=description["tokenizer"]["context_length"])
        self.prompt_templates = tuple(description["prompt_templates"])
        mean, std = description["image_mean"], description["image_std"]
        self.image_mean = (float(mean[0]), float(mean[1]), float(mean[2]))
        self.image_std = (float(std[0]), float(std[1]), float(std[2]))
        self.image_size = int(description["image_size"])
        self._grid = (int(description["grid"][0]), int(description["grid"][1]))

    def grid_for(self, image_size: int) -> tuple[int, int]:
        if image_size != self.image_size:
            raise ValueError(f"this export takes {self.image_size} px inputs, got {image_size}")
        return self._grid

    def encode_class_names(self, names: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize_prompts(names).numpy().astype(np.int64)
        (raw,) = self.sessions["text"].run(None, {"token_ids": ids})
        vectors = torch.from_numpy(raw).float()
        templates = len(self.prompt_templates)
        if not self.description["text_normalize"]:
            return vectors.reshape(len(names), templates, -1).mean(dim=1)
        vectors = F.normalize(vectors, dim=-1).reshape(len(names), templates, -1).mean(dim=1)
        return F.normalize(vectors, dim=-1)

    def encode_views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.sessions["views"].run(None, {"pixels": pixels.float().cpu().numpy()})
        return [torch.from_numpy(x) for x in outputs]

    def decode_rows(
        self, shared: list[torch.Tensor], text: torch.Tensor, grid: tuple[int, int]
    ) -> torch.Tensor:
        feed = {f"rows_{i}": x.cpu().numpy() for i, x in enumerate(shared)}
        feed["class_vectors"] = text.float().cpu().numpy()
        (logits,) = self.sessions["decode"].run(None, feed)
        return torch.from_numpy(logits)
