"""``clsclip info``: which family a model folder is, and its settings, without loading it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    info = commands.add_parser(
        "info",
        help="describe a model folder, Hub repo or ONNX export (its family and settings)",
        description="Reads config.json (or clsclip-onnx.json) only: no weights are loaded.",
    )
    info.add_argument("model", help="a model folder, a Hugging Face Hub repo id, or an export")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(run=run)


def read_config(source: str) -> tuple[Any, dict[str, str]]:
    """The config of a saved model (folder, Hub repo or ONNX export), of its own family, read
    without loading weights; and what its files are."""
    from clsclip.backends.onnx_format import ONNX_CONFIG, description_config, read_description
    from clsclip.config import config_from_dict
    from clsclip.storage.hub import resolve_model_files

    folder = Path(source)
    if (folder / ONNX_CONFIG).is_file():
        config = description_config(read_description(folder), folder / ONNX_CONFIG)
        return config, {"format": "ONNX export (backend onnxruntime)"}
    found = resolve_model_files(source)
    config = config_from_dict(found.config_data)
    return config, {"weights": str(found.weights) if found.weights else "none (config only)"}


def describe(source: str) -> dict[str, Any]:
    """The family, model type and settings of a saved model (its config), plus its files."""
    config, files = read_config(source)
    out = {
        "family": config.FAMILY,
        "model_type": config.MODEL_TYPE,
        **files,
        "backbone_weights": backbone_source(config, files),
        "config": config.to_dict(),
    }
    if hasattr(config, "window"):  # training-free: the windows its method's defaults give
        window = f"{config.window} px" if config.window else "the whole image in one pass"
        out["windows"] = f"{window} every {config.stride} px" if config.window else window
    return out  # fmt: skip


def backbone_source(config: Any, files: dict[str, str]) -> str:
    """Where the backbone's weights come from: stored with the model, a checkpoint file, an
    open_clip tag (downloaded and cached by open_clip), or nowhere (random)."""
    from clsclip.config.base import is_weights_file

    stored = files.get("weights", "none").startswith("none") is False or "format" in files
    pretrained = config.pretrained
    if stored and (pretrained is None or "format" in files):
        return "stored with the model"
    if pretrained is None:
        return "none: random (no pretrained tag and no weights stored)"
    if is_weights_file(pretrained):
        return f"checkpoint file {pretrained}"
    backbone = config.backbone if isinstance(config.backbone, str) else "custom"
    note = " (the model's own weights stored)" if stored else ""
    return f"open_clip {backbone} / {pretrained} (open_clip's download cache){note}"


def run(args: argparse.Namespace) -> int:
    try:
        description = describe(args.model)
    except USER_ERRORS as e:
        return fail(e)
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    config = description["config"]
    backbone = config["backbone"] if isinstance(config["backbone"], str) else "custom open_clip ViT"
    print(f"{args.model}: {description['family']} ({description['model_type']})")
    print(f"  backbone: {backbone}, weights: {description['backbone_weights']}")
    size, mode = config["image_size"], config["resize_mode"]
    print(f"  input: {size} px ({mode}), threshold {config['threshold']}")
    if description["model_type"] == "clsclip-dense":
        print(f"  method: {config['method']}, background prompts: {config['background_prompts']}")
        print(f"  windows: {description['windows']}, refine: {config['refine']}")
    for key in ("weights", "format"):
        if key in description:
            print(f"  {key}: {description[key]}")
    return 0
