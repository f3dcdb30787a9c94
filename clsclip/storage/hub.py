"""Finding a saved model: a local folder or a Hugging Face Hub repo, and pushing one."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clsclip.config import ModelConfig, read_json
from clsclip.storage.folder import CONFIG_NAME, PICKLE_WEIGHTS_NAME, WEIGHTS_NAME

logger = logging.getLogger(__name__)

CONFIG_ONLY_TYPES = ("clsclip-dense",)
"""Model types whose folder may hold only ``config.json``: nothing of theirs is trained, and the
backbone comes from open_clip's pretrained tag."""
_PICKLE_NAMES = (PICKLE_WEIGHTS_NAME, "model.pt", "model.pth", "model.ckpt")


@dataclass(frozen=True)
class ModelFiles:
    """The files of a saved model, and the config file's content (read once)."""

    config: Path
    weights: Path | None
    """None for a config-only folder (a training-free model on open_clip's pretrained weights)."""
    config_data: dict[str, Any]


def resolve_model_files(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelFiles:
    """Locate the config and weights of a model.

    ``source`` is a local folder, or a Hub repo id ``"org/name"`` (optionally ``"hf-hub:org/name"``)
    fetched with huggingface_hub (cached; offline with ``HF_HUB_OFFLINE=1`` or
    ``local_files_only``). Weights are ``model.safetensors``; a transformers CLIPSeg checkpoint
    (``model_type: clipseg``) may instead have ``pytorch_model.bin``, read with
    ``weights_only=True``. Raises `FileNotFoundError` for a missing folder or file and `OSError`
    when the Hub cannot provide the model.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"model source must be a str or a path, got {type(source).__name__}")
    text = os.fspath(source)
    folder: Path | None = None
    locate: Callable[[str], Path | None]
    if text.startswith("hf-hub:"):
        text = text[len("hf-hub:") :]
        locate = _hub_locator(text, revision, cache_dir, local_files_only, token)
    elif os.path.isdir(text):
        folder = Path(text)
        locate = _folder_locator(folder)
    elif os.path.exists(text):
        raise NotADirectoryError(
            f"{text!r} is a file, not a model folder; pass the folder that holds {CONFIG_NAME} "
            f"and {WEIGHTS_NAME}"
        )
    elif isinstance(source, os.PathLike) or _looks_like_path(text):
        raise FileNotFoundError(f"model folder not found: {text!r}")
    else:
        locate = _hub_locator(text, revision, cache_dir, local_files_only, token)
    config = locate(CONFIG_NAME)
    if config is None:
        raise FileNotFoundError(f"{text} is not a clsclip model: {CONFIG_NAME} is missing")
    weights = locate(WEIGHTS_NAME)
    config_data = read_json(config)
    transformers_clipseg = config_data.get("model_type") == "clipseg"
    if weights is None and transformers_clipseg:
        weights = locate(PICKLE_WEIGHTS_NAME)
    if weights is None and config_data.get("model_type") in CONFIG_ONLY_TYPES:
        return ModelFiles(config=config, weights=None, config_data=config_data)
    if weights is None:
        pickled = [n for n in _PICKLE_NAMES if folder is not None and (folder / n).is_file()]
        hint = (
            f"; found {pickled}, but clsclip reads only safetensors, never pickle"
            if pickled
            else ""
        )
        raise FileNotFoundError(f"{text} has no {WEIGHTS_NAME}{hint}")
    return ModelFiles(config=config, weights=weights, config_data=config_data)


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or os.sep in text.replace("/", "")
        or os.path.exists(text)
    )


def _folder_locator(folder: Path) -> Callable[[str], Path | None]:
    def locate(filename: str) -> Path | None:
        path = folder / filename
        return path if path.is_file() else None

    return locate


def _hub_locator(
    repo_id: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> Callable[[str], Path | None]:
    """A function that fetches one file of a Hub repo: its cached path, or None if the repo
    has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def locate(filename: str) -> Path | None:
        try:
            return Path(
                hf_hub_download(
                    repo_id,
                    filename,
                    revision=revision,
                    cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                    local_files_only=local_files_only,
                    token=token,
                )
            )
        except HFValidationError as e:
            raise FileNotFoundError(
                f"{repo_id!r} is neither a local model folder nor a valid Hub repo id ('org/name')"
            ) from e
        except LocalEntryNotFoundError as e:
            raise OSError(
                f"model {repo_id!r} is not available offline: {filename} is not in the local "
                "Hugging Face cache, and downloads are off (HF_HUB_OFFLINE=1 or "
                "local_files_only=True) or the Hub could not be reached. Download it once with "
                "network access, or pass a local folder."
            ) from e
        except RepositoryNotFoundError as e:
            raise OSError(
                f"no model repo {repo_id!r} on the Hugging Face Hub (or it is private or gated: "
                "pass token=...)"
            ) from e
        except RevisionNotFoundError as e:
            raise OSError(f"model repo {repo_id!r} has no revision {revision!r}") from e
        except EntryNotFoundError:
            return None

    return locate


def push_folder_to_hub(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload clsclip model",
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=os.fspath(folder),
        revision=revision,
        commit_message=commit_message,
    )
    logger.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", info))


def push_model(
    save: Callable[[str], object],
    config: ModelConfig,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload clsclip model",
) -> str:
    """``save(folder)`` into a temporary folder, add a model card, upload it to ``repo_id``
    (created if needed); returns the commit URL."""
    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        write_model_card(Path(tmp), repo_id, config)
        return push_folder_to_hub(
            tmp,
            repo_id,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message,
        )


def write_model_card(folder: Path, repo_id: str, config: ModelConfig) -> None:
    """Write a README.md model card for a Hub repo into ``folder``."""
    backbone = config.backbone if isinstance(config.backbone, str) else "custom open_clip ViT"
    weights = config.pretrained or "weights stored here"
    paper = {
        "clsclip": '"[CLS] Token is All You Need for Zero-Shot Semantic Segmentation" (ClsCLIP, '
        "arXiv 2304.06212)",
        "clsclip-clipseg": '"Image Segmentation Using Text and Image Prompts" (CLIPSeg, CVPR 2022)',
    }.get(config.MODEL_TYPE, config.MODEL_TYPE)
    card = f"""---
library_name: clsclip
tags:
- image-segmentation
- zero-shot
- clip
---
# {repo_id}

A zero-shot semantic segmentation model, {paper}, saved with
[clsclip](https://pypi.org/project/clsclip/).

- model type: {config.MODEL_TYPE}; backbone: {backbone} ({weights})
- input size: {config.image_size} px

```python
from clsclip import Segmenter
seg = Segmenter.from_pretrained("{repo_id}")
result = seg.segment("image.jpg", ["dog", "cat"])
```
"""
    (folder / "README.md").write_text(card, encoding="utf-8")
