"""ONNX export that keeps the vocabulary open: three graphs and a JSON that describes them.

- ``text.onnx``: token ids ``N x context`` (int64) -> text vectors ``N x embed_dim`` (CLIP's
  ``encode_text``, not normalised);
- ``views.onnx``: normalised views ``V x 3 x S x S`` -> the class-independent tensors
  (ClsCLIP: the tokens after the shared blocks; CLIPSeg: the reduced activations);
- ``decode.onnx``: rows of those tensors and class vectors ``P x embed_dim`` -> logits
  ``P x h x w``;
- ``clsclip-onnx.json``: input size, normalisation, resize mode, threshold, prompt templates,
  how text vectors are combined, tokenizer settings, opset, clsclip's version, the graphs' input
  and output names; with ``classes``, ``classes.npz`` holds ready class vectors, so an app needs
  no text encoder.

Batch dimensions (N, V, P) are dynamic; the input size is fixed at export. Uses torch's exporter
(the dynamo path, falling back to TorchScript for graphs it cannot capture) and `onnx.checker`.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clsclip.backends.onnx_format import (
    CLASSES_FILE,
    FORMAT,
    FORMAT_VERSION,
    GRAPHS,
    ONNX_CONFIG,
    VOCABULARY,
    graph_digest,
)
from clsclip.model import SegmentationModel
from clsclip.model.clipseg_model import ClipSegModel
from clsclip.model.dense_clip import DenseClipModel
from clsclip.optional import require
from clsclip.storage.files import write_folder
from clsclip.version import __version__

logger = logging.getLogger(__name__)

OPSET = 18


class _Text(nn.Module):
    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.clip = model.backbone.clip

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        # The whole context (no data-dependent cut): the same vectors under the causal mask.
        return self.clip.encode_text(token_ids, normalize=False)


class _Views(nn.Module):
    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if isinstance(self.model, DenseClipModel):  # the windows' network; the rest in torch
            return (self.model.window_features(pixels),)
        return tuple(self.model.encode_views(pixels))


class _Decode(nn.Module):
    def __init__(self, model: SegmentationModel, grid: tuple[int, int]) -> None:
        super().__init__()
        self.model, self.grid = model, grid

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *shared, text = inputs
        if isinstance(self.model, DenseClipModel):  # one window's cosines; the merge in torch
            return self.model.window_cosines(shared[0][:, None], text)[:, 0]
        return self.model.decode_rows(list(shared), text, self.grid)


def export_onnx(
    model: SegmentationModel,
    config: Any,
    out_dir: str | Path,
    *,
    classes: Sequence[str] | None = None,
    opset: int = OPSET,
    int8: bool = False,
) -> Path:
    """Write the three graphs, the JSON and (with ``classes``) their vectors into ``out_dir``;
    with ``int8``, the graphs are then quantised by onnxruntime's dynamic quantisation (int8
    weights of matrix products, activations quantised at run time).

    The export is written complete into a hidden sibling folder and swapped in, so an
    interruption leaves the previous export or the new one, never a mix; other files already in
    ``out_dir`` are kept.

    Returns the folder. Raises `ImportError` with the install hint without onnx.
    """
    out = Path(out_dir)
    model = model.float().eval().cpu()
    write_folder(
        out,
        lambda tmp: _write_export(model, config, tmp, classes, opset, int8),
        replaces={*GRAPHS.values(), ONNX_CONFIG, CLASSES_FILE, VOCABULARY},
    )
    logger.info("exported %s to %s", type(model).__name__, out)
    return out


def _write_export(
    model: SegmentationModel,
    config: Any,
    out: Path,
    classes: Sequence[str] | None,
    opset: int,
    int8: bool,
) -> None:
    onnx = require("onnx", purpose="ONNX export")
    require("onnxscript", purpose="ONNX export (torch's exporter)")
    _check_tokenizer(model)
    size = config.image_size
    grid = model.grid_for(size)
    pixels = torch.zeros(2, 3, size, size)
    if isinstance(model, DenseClipModel):
        pixels = torch.zeros(2, 3, *dense_window_input(model, config))
    with torch.no_grad():
        shared = list(_Views(model)(pixels))  # dense: windows' features, W x T x E
        text = torch.randn(3, model.backbone.embed_dim)
        rows = [x[torch.tensor([0, 1, 1])] for x in shared]
    context = _context_length(model)
    ids = torch.zeros(2, context, dtype=torch.long)
    ids[:, 0], ids[:, 1] = 49406, 49407
    shared_names = [f"shared_{i}" for i in range(len(shared))]
    _export(_Text(model), (ids,), out / "text.onnx", ["token_ids"], ["text"], opset)
    _export(_Views(model), (pixels,), out / "views.onnx", ["pixels"], shared_names, opset)
    _export(
        _Decode(model, grid),
        (*rows, text),
        out / "decode.onnx",
        [*[f"rows_{i}" for i in range(len(shared))], "class_vectors"],
        ["logits"],
        opset,
    )
    for name in GRAPHS.values():
        onnx.checker.check_model(str(out / name))
        if int8:
            quantize(out / name)
    _copy_vocabulary(out)
    description = describe(model, config, context, len(shared), opset)
    for graph in description["graphs"].values():
        graph["sha256"] = graph_digest(out / graph["file"])
    description["precision"] = "int8" if int8 else "fp32"
    if classes:
        names = list(classes)
        with torch.no_grad():
            vectors = model.encode_class_names(names).float().numpy()
        np.savez(out / CLASSES_FILE, names=np.asarray(names), vectors=vectors)
        description["classes_file"] = CLASSES_FILE
    (out / ONNX_CONFIG).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def dense_window_input(model: DenseClipModel, config: Any) -> tuple[int, int]:
    """The fixed input of a training-free export's window graph: every window of every view
    must be this size, so the windows must be smaller than the views."""
    if model.window <= 0:
        raise ValueError(
            "an ONNX export runs fixed-size windows; this model runs each image in one pass "
            "(window_size=0, the references' VOC configs of NACLIP): export a copy with "
            "window_size > 0"
        )
    if config.resize_mode == "short-side" and model.window > config.image_size:
        raise ValueError(
            f"an ONNX export runs fixed-size windows: window_size {model.window} px must be at "
            f"most the short side, image_size {config.image_size} px"
        )
    side = min(model.window, config.image_size)
    return model.windows.input_size(side, side)


def describe(
    model: SegmentationModel, config: Any, context: int, num_shared: int, opset: int
) -> dict[str, Any]:
    """Everything the pipeline needs besides the graphs."""
    extra: dict[str, Any] = {}
    if isinstance(model, DenseClipModel):
        windows = model.windows
        extra["windows"] = {
            "window": windows.window, "stride": windows.stride, "patch": windows.patch,
            "pad": windows.pad, "logit_scale": windows.logit_scale,
            "input": list(dense_window_input(model, config)),
        }  # fmt: skip
    return extra | {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "clsclip_version": __version__,
        "model_type": config.MODEL_TYPE,
        "config": config.to_file_dict(),
        "image_size": config.image_size,
        "grid": list(model.grid_for(config.image_size)),
        "image_mean": list(model.image_mean),
        "image_std": list(model.image_std),
        "resize_mode": config.resize_mode,
        "threshold": config.threshold,
        "prompt_templates": list(config.prompt_templates),
        # ClsCLIP and the training-free models: unit-normalise each prompt's vector, average
        # over templates, normalise again; CLIPSeg: average the raw vectors.
        "text_normalize": not isinstance(model, ClipSegModel),
        # "independent": one sigmoid per class; "softmax": the classes (and the background
        # prompts) compete: the scoring rule, clsclip.model.scores.ScoringRule.
        "class_scores": model.scoring.kind,
        "background_prompts": list(getattr(model, "background_prompts", ())),
        "tokenizer": {
            "type": "clip-bpe",
            "vocabulary": VOCABULARY,
            "context_length": context,
            "start_token": 49406,
            "end_token": 49407,
            "lowercase": True,
        },
        "graphs": {
            "text": {"file": "text.onnx", "inputs": ["token_ids"], "outputs": ["text"]},
            "views": {
                "file": "views.onnx",
                "inputs": ["pixels"],
                "outputs": [f"shared_{i}" for i in range(num_shared)],
            },
            "decode": {
                "file": "decode.onnx",
                "inputs": [*[f"rows_{i}" for i in range(num_shared)], "class_vectors"],
                "outputs": ["logits"],
            },
        },
        "opset": opset,
        "logits": "foreground logits on the patch grid of the square input (ClsCLIP) or at the "
        "input size (CLIPSeg); sigmoid gives probabilities",
    }


def quantize(path: Path) -> None:
    """Replace an ONNX graph by onnxruntime's dynamic int8 quantisation of it."""
    quantization = require("onnxruntime.quantization", purpose="int8 ONNX export")
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
    tmp = path.with_name(f".{path.name}.int8")
    quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
    tmp.replace(path)


def _check_tokenizer(model: SegmentationModel) -> None:
    """The export carries CLIP's BPE: a model with another tokenizer (a Hugging Face one) would
    load with wrong token ids, so it is refused."""
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(model.tokenizer, SimpleTokenizer):
        raise ValueError(
            f"ONNX export supports backbones with CLIP's BPE tokenizer; this model's text "
            f"tokenizer is {type(model.tokenizer).__name__}, which the export cannot carry"
        )


def _context_length(model: SegmentationModel) -> int:
    context = getattr(model.tokenizer, "context_length", None)
    if not isinstance(context, int):
        raise ValueError("ONNX export needs a tokenizer with a fixed context_length")
    return context


def _copy_vocabulary(out: Path) -> None:
    from open_clip import tokenizer

    shutil.copyfile(Path(tokenizer.__file__).parent / VOCABULARY, out / VOCABULARY)


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    opset: int,
) -> None:
    """Export one graph with a dynamic first dimension on every input and output."""
    module.eval()  # the wrappers are new modules (training mode); the model is already in eval
    common: dict[str, Any] = {
        "input_names": inputs,
        "output_names": outputs,
        "opset_version": opset,
    }
    batch = torch.export.Dim("batch", min=1)
    per_input = tuple({0: batch} for _ in args)
    # `_Decode.forward(*inputs)` takes its tensors as one variadic argument.
    shapes: Any = (per_input,) if isinstance(module, _Decode) else per_input
    try:
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
            **common,
        )
    except Exception as e:  # the dynamo exporter cannot capture every graph: TorchScript can
        logger.info("dynamo export of %s failed (%s); using the TorchScript exporter", path.name, e)
        axes = {name: {0: "batch"} for name in [*inputs, *outputs]}
        with warnings.catch_warnings():
            # Shape checks in the model are constants of the trace; the batch axis stays dynamic.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, args, str(path), dynamo=False, dynamic_axes=axes, **common)


__all__ = ["OPSET", "describe", "export_onnx"]
