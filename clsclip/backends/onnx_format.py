"""The exported folder's description, ``clsclip-onnx.json``: its names, and its checks on read.

An export is three graphs and this JSON (`clsclip.backends.onnx_export` writes them). Reading
checks every value the pipeline uses (finite, positive, bounded) and the sha256 of every graph
recorded at export, so a hand-edited JSON or graphs mixed from two exports are refused naming
the field or file, before anything is allocated or run.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from clsclip.config import (
    MAX_CONTEXT,
    MAX_IMAGE_SIZE,
    MAX_NORMALISATION,
    AnyConfig,
    config_from_dict,
)
from clsclip.geometry import RESIZE_MODES

ONNX_CONFIG = "clsclip-onnx.json"
FORMAT = "clsclip-onnx"
FORMAT_VERSION = 1
GRAPHS = {"text": "text.onnx", "views": "views.onnx", "decode": "decode.onnx"}
CLASSES_FILE = "classes.npz"
VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"


def graph_digest(path: Path) -> str:
    """sha256 (hex) of a graph file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_description(folder: str | Path) -> dict[str, Any]:
    """The checked ``clsclip-onnx.json`` of an exported folder.

    Raises:
        FileNotFoundError: no such folder, no description, or a graph it names is missing.
        ValueError: the description is not valid JSON, not an object, of another format, holds
            a value out of its bounds (named), or a graph's sha256 differs from the recorded
            one (the file named: graphs from two exports, or a damaged file).
    """
    folder = Path(folder)
    path = folder / ONNX_CONFIG
    if not folder.is_dir():
        raise FileNotFoundError(f"exported model folder not found: {str(folder)!r}")
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not an exported clsclip model: no {ONNX_CONFIG} (export one with "
            "clsclip export MODEL --out DIR)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a {FORMAT} format {FORMAT_VERSION} description")
    _check_values(data, path)
    _check_graphs(data, folder, path)
    return data


def description_config(data: dict[str, Any], path: Path) -> AnyConfig:
    """The model config a description holds; `ValueError` naming the file when it is invalid."""
    config = data.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: 'config' must be an object")
    try:
        return config_from_dict(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid 'config': {e}") from e


def _fail(path: Path, field: str, rule: str, value: object) -> ValueError:
    return ValueError(f"{path}: {field!r} must be {rule}, got {value!r}")


def _int(data: dict[str, Any], field: str, low: int, high: int, path: Path) -> int:
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, field, f"an integer in [{low}, {high}]", value)
    return value


def _rgb(data: dict[str, Any], field: str, path: Path, *, positive: bool) -> None:
    value = data.get(field)
    rule = (
        "3 finite "
        + ("positive " if positive else "")
        + f"numbers of at most {MAX_NORMALISATION:g}"
    )
    if not isinstance(value, list) or len(value) != 3:
        raise _fail(path, field, rule, value)
    for v in value:
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or abs(v) > MAX_NORMALISATION
            or (positive and not v > 0)
        ):
            raise _fail(path, field, rule, value)


def _check_values(data: dict[str, Any], path: Path) -> None:
    size = _int(data, "image_size", 1, MAX_IMAGE_SIZE, path)
    grid = data.get("grid")
    if (
        not isinstance(grid, list)
        or len(grid) != 2
        or not all(isinstance(g, int) and not isinstance(g, bool) and 1 <= g <= size for g in grid)
    ):
        raise _fail(path, "grid", f"2 integers in [1, {size}]", grid)
    _rgb(data, "image_mean", path, positive=False)
    _rgb(data, "image_std", path, positive=True)
    if data.get("resize_mode") not in RESIZE_MODES:
        raise _fail(path, "resize_mode", f"one of {list(RESIZE_MODES)}", data.get("resize_mode"))
    threshold = data.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise _fail(path, "threshold", "a number in [0, 1]", threshold)
    templates = data.get("prompt_templates")
    if (
        not isinstance(templates, list)
        or not templates
        or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates)
    ):
        raise _fail(path, "prompt_templates", "a non-empty list of str with one '{}'", templates)
    if not isinstance(data.get("text_normalize"), bool):
        raise _fail(path, "text_normalize", "true or false", data.get("text_normalize"))
    from clsclip.model.scores import SCORING_RULES  # torch: only for a description read in full

    if data.get("class_scores", "independent") not in SCORING_RULES:
        raise _fail(path, "class_scores", f"one of {list(SCORING_RULES)}", data.get("class_scores"))
    background = data.get("background_prompts", [])
    if not isinstance(background, list) or not all(isinstance(b, str) and b for b in background):
        raise _fail(path, "background_prompts", "a list of non-empty names", background)
    tokenizer = data.get("tokenizer")
    if not isinstance(tokenizer, dict) or tokenizer.get("type") != "clip-bpe":
        raise _fail(path, "tokenizer", "an object with type 'clip-bpe'", tokenizer)
    _int(tokenizer, "context_length", 2, MAX_CONTEXT, path)


def _check_graphs(data: dict[str, Any], folder: Path, path: Path) -> None:
    graphs = data.get("graphs")
    if not isinstance(graphs, dict) or set(graphs) != set(GRAPHS):
        raise _fail(path, "graphs", f"an object with the graphs {sorted(GRAPHS)}", graphs)
    for name, expected in GRAPHS.items():
        graph = graphs[name]
        if not isinstance(graph, dict) or graph.get("file") != expected:
            raise _fail(path, f"graphs.{name}", f"an object with file {expected!r}", graph)
        for key in ("inputs", "outputs"):
            names = graph.get(key)
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) for n in names)
            ):
                raise _fail(path, f"graphs.{name}.{key}", "a non-empty list of names", names)
        file = folder / expected
        if not file.is_file():
            raise FileNotFoundError(f"{folder} lacks the graph {expected} that {ONNX_CONFIG} names")
        recorded = graph.get("sha256")
        if recorded is not None and graph_digest(file) != recorded:
            raise ValueError(
                f"{file} is not the graph this export wrote (its sha256 differs from the one in "
                f"{ONNX_CONFIG}): graphs mixed from two exports, or a damaged file; export again"
            )
