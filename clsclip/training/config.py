"""Training settings: a frozen dataclass read from JSON, with command-line overrides."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clsclip.checks import check_int, check_number
from clsclip.config import ClsClipConfig, read_json
from clsclip.datasets.folds import DATASETS, check_fold
from clsclip.datasets.voc import DEFAULT_NOVEL_PIXELS, NOVEL_PIXELS

CONFIG_DIR = Path(__file__).parent / "configs"
MAX_LR = 1e6
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("poly", "cosine_restarts")
UNFREEZE = ("none", "visual", "all")
TRAIN_LISTS = ("standard", "all-pairs")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs.

    Attributes:
        model: `ClsClipConfig` fields of the model to train (ignored with ``init_from``).
        init_from: a saved model (folder or Hub id) to start from instead.
        dataset, data_root, fold: the data (VOC layout) and the fold whose base classes train.
        train_split, val_split: id lists for training and for validation on novel classes.
        train_lists: ``"standard"``: the references' training pairs (PASCAL-5i: the bundled
            ``trn`` lists of the other three folds; COCO-20i: the fold's ``trn`` list), whose
            images must be in ``train_split``; ``"all-pairs"``: every base-class pair of
            ``train_split`` with at least ``min_pixels`` pixels.
        novel_pixels: what novel-class pixels of training images become: ``"background"`` (the
            references), ``"ignore"`` (255) or ``"drop-image"`` (such images are left out).
        val_seed: seed of the validation draw (all-pairs episodes of ``val_split``, never the
            standard test episodes); None: ``seed + 1``.
        output_dir: checkpoints, logs and the exported models (``best/``, ``last/``).
        max_steps, batch_size, num_workers: the loop.
        optimizer: ``"adamw"`` or ``"sgd"`` (momentum ``momentum``).
        lr, weight_decay: per METHOD.md's descendant: SGD, lr 5e-5 at batch 8 (PASCAL).
        schedule: ``"poly"`` (power ``poly_power``) or ``"cosine_restarts"`` (period
            ``restart_steps``), after ``warmup_steps`` of linear warm-up.
        grad_clip: max gradient norm, or 0 for none.
        amp: bf16 autocast on CUDA (ignored on the CPU).
        unfreeze: ``"none"`` (the paper: projection and decoder only), ``"visual"`` or ``"all"``
            (ablations, and tiny models trained end to end).
        seed: seeds sampling, augmentation and initialisation.
        val_every, val_episodes: validate on novel classes every N steps (0: never).
        checkpoint_every, log_every: steps between checkpoints and log lines.
        min_pixels: least pixels of a class in a training sample.
        device: ``"cpu"``, ``"cuda"``... (None: CUDA when available; under torchrun each rank
            takes ``cuda:LOCAL_RANK``).
    """

    model: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    dataset: str = "pascal5i"
    data_root: str = ""
    fold: int = 0
    train_split: str = "trainaug"
    val_split: str = "val"
    train_lists: str = "all-pairs"
    novel_pixels: str = DEFAULT_NOVEL_PIXELS
    val_seed: int | None = None
    output_dir: str = "runs/clsclip"
    max_steps: int = 20000
    batch_size: int = 8
    num_workers: int = 2
    optimizer: str = "sgd"
    lr: float = 5e-5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "poly"
    poly_power: float = 0.9
    restart_steps: int = 5000
    warmup_steps: int = 500
    grad_clip: float = 1.0
    amp: bool = True
    unfreeze: str = "none"
    seed: int = 0
    val_every: int = 2000
    val_episodes: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 50
    min_pixels: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {list(DATASETS)}")
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("unfreeze", UNFREEZE),
            ("train_lists", TRAIN_LISTS),
            ("novel_pixels", NOVEL_PIXELS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {list(allowed)}"
                )
        check_fold(self.dataset, self.fold)
        for name in ("max_steps", "batch_size", "restart_steps", "log_every"):
            check_int(name, getattr(self, name), minimum=1)
        for name in (
            "num_workers",
            "warmup_steps",
            "val_every",
            "val_episodes",
            "checkpoint_every",
        ):
            check_int(name, getattr(self, name), minimum=0)
        if self.val_seed is not None:
            check_int("val_seed", self.val_seed, minimum=0)
        check_number("lr", self.lr, maximum=MAX_LR)  # 1e308 would overflow the optimizers' float32
        if self.init_from is None:
            self.model_config()  # validates the model fields now, not after the data is read

    def check_paths(self) -> None:
        """Before any work: the data root is a folder and ``output_dir`` is not a file
        (`FileNotFoundError` / `NotADirectoryError` naming them)."""
        if not self.data_root:
            raise ValueError("data_root is not set; pass --data-root or set it in the config")
        if not Path(self.data_root).is_dir():
            raise FileNotFoundError(f"data_root {self.data_root!r} is not a folder")
        output = Path(self.output_dir)
        for path in (output, *output.parents):
            if path.exists():
                if not path.is_dir():
                    raise NotADirectoryError(
                        f"output_dir {self.output_dir!r} cannot be created: {str(path)!r} is a file"
                    )
                break

    def model_config(self) -> ClsClipConfig:
        return ClsClipConfig.from_dict(self.model)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        """Read a JSON file, or a bundled config by name (``"pascal5i-fold0"`` ...
        ``"coco20i-fold3"``, see `bundled_configs`)."""
        if not os.path.isfile(path) and path in bundled_configs():
            path = str(CONFIG_DIR / f"{path}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"training config not found: {path!r}; bundled: {sorted(bundled_configs())}"
            )
        return cls.from_dict(read_json(path))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bundled_configs() -> list[str]:
    """Names of the ready configs: PASCAL-5i and COCO-20i folds 0-3, as in METHOD.md."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
