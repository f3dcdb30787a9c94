"""Finding a saved model: a local folder or a Hugging Face Hub repo, and pushing one."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLE_NAMES = ("pytorch_model.bin", "model.pt", "model.pth", "model.ckpt")


@dataclass(frozen=True)
class ModelFiles:
    """The files of a saved model."""

    config: Path
    weights: Path


def resolve_model_files(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> ModelFiles:
    """Locate ``config.json`` and ``model.safetensors`` of a model.

    ``source`` is a local folder, or a Hub repo id ``"org/name"`` (optionally ``"hf-hub:org/name"``)
    fetched with huggingface_hub (cached; offline with ``HF_HUB_OFFLINE=1`` or
    ``local_files_only``). Raises `FileNotFoundError` for a missing folder or file and `OSError`
    when the Hub cannot provide the model.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"model source must be a str or a path, got {type(source).__name__}")
    text = os.fspath(source)
    if text.startswith("hf-hub:"):
        return _from_hub(text[len("hf-hub:") :], revision, cache_dir, local_files_only, token)
    if os.path.isdir(text):
        return _from_folder(Path(text))
    if isinstance(source, os.PathLike) or _looks_like_path(text):
        raise FileNotFoundError(f"model folder not found: {text!r}")
    return _from_hub(text, revision, cache_dir, local_files_only, token)


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.count("/") > 1
        or os.sep in text.replace("/", "")
        or os.path.exists(text)
    )


def _from_folder(folder: Path) -> ModelFiles:
    config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config.is_file():
        raise FileNotFoundError(f"{folder} is not a clsclip model folder: {CONFIG_NAME} is missing")
    if not weights.is_file():
        pickled = [name for name in _PICKLE_NAMES if (folder / name).is_file()]
        hint = (
            f"; found {pickled}, but clsclip reads only safetensors, never pickle"
            if pickled
            else ""
        )
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}{hint}")
    return ModelFiles(config=config, weights=weights)


def _from_hub(
    repo_id: str,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    token: str | bool | None,
) -> ModelFiles:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    paths = []
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths.append(
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
        except EntryNotFoundError as e:
            raise FileNotFoundError(
                f"Hub repo {repo_id!r} has no {filename}: it is not a clsclip model"
            ) from e
    return ModelFiles(config=Path(paths[0]), weights=Path(paths[1]))


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
