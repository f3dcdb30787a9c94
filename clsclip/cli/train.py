"""``clsclip train``: a ClsCLIP model on a fold's base classes (one process, or torchrun)."""

from __future__ import annotations

import argparse
from typing import Any

from clsclip.cli.common import USER_ERRORS, fail


def add_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a ClsCLIP model on a fold's base classes (needs clsclip[train])",
        description="Train on PASCAL-5i / COCO-20i (VOC layout). Run under torchrun for many "
        "GPUs. Bundled configs: pascal5i-fold0..3, coco20i-fold0..3.",
    )
    train.add_argument("--config", required=True, help="a training config JSON, or a bundled name")
    train.add_argument(
        "--data-root", default=None, help="the dataset folder (default: the config's)"
    )
    train.add_argument(
        "--fold", type=int, default=None, help="the fold 0-3 (default: the config's)"
    )
    train.add_argument(
        "--output-dir",
        default=None,
        help="checkpoints and the best/last models (default: the config's)",
    )
    train.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps (default: the config's)",
    )
    train.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from clsclip.training import TrainConfig, train

    try:
        config = TrainConfig.load(args.config).replace(
            data_root=args.data_root,
            fold=args.fold,
            output_dir=args.output_dir,
            max_steps=args.max_steps,
            device=args.device,
        )
        config.check_paths()
        folder = train(config)
    except (*USER_ERRORS, FloatingPointError) as e:
        return fail(e)
    print(f"model written to {folder}")
    return 0
