"""The training loop: base classes of a fold, CLIP frozen, projection and decoder trained."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from clsclip.datasets import IGNORE, FoldDataset
from clsclip.datasets.standard import standard_training_pairs
from clsclip.distributed import DistributedContext
from clsclip.model import ClsClipModel
from clsclip.pipeline.text_cache import TextCache
from clsclip.segmenter import Segmenter
from clsclip.storage.weights import BACKBONE_PREFIX
from clsclip.training.checkpoint import load_checkpoint, save_checkpoint
from clsclip.training.config import TrainConfig
from clsclip.training.schedule import lr_factor

FUSED_DEVICES = ("cpu", "cuda") if torch.__version__ >= "2.4" else ()  # a TorchVersion
"""Devices where torch has fused AdamW and SGD kernels (since torch 2.4 for both)."""

logger = logging.getLogger(__name__)


def masked_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of ``B x S x S`` logits against targets in {0, 1, 255 = ignore}."""
    valid = target != IGNORE
    if not valid.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[valid], target[valid].float())


def set_trainable(model: ClsClipModel, unfreeze: str) -> None:
    """Projection and decoder always train; ``"visual"`` / ``"all"`` unfreeze more (ablations)."""
    for name, p in model.named_parameters():
        if name.startswith("backbone.clip.visual."):
            p.requires_grad_(unfreeze in ("visual", "all"))
        elif name.startswith(BACKBONE_PREFIX):
            p.requires_grad_(unfreeze == "all")
        else:
            p.requires_grad_(True)


class Trainer:
    """One training run (see `train`)."""

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        config.check_paths()
        self.config = config
        self.context = DistributedContext.from_env(config.device)
        self.device = self.context.device(config.device)
        self.output = Path(config.output_dir)
        self.progress = progress and self.context.is_main
        torch.manual_seed(config.seed)
        if config.init_from:
            self.segmenter = Segmenter.from_pretrained(config.init_from, device=self.device)
        else:
            self.segmenter = Segmenter.from_config(config.model_config(), device=self.device)
        model = self.segmenter.model
        if not isinstance(model, ClsClipModel):
            raise TypeError(f"clsclip trains ClsCLIP models, got {type(model).__name__}")
        self.model = model
        set_trainable(model, config.unfreeze)
        pairs = None
        if config.train_lists == "standard":
            pairs = standard_training_pairs(config.dataset, config.fold)
        self.dataset = FoldDataset(
            config.data_root,
            dataset=config.dataset,
            fold=config.fold,
            split=config.train_split,
            train=True,
            input_size=self.segmenter.config.image_size,
            mean=model.image_mean,
            std=model.image_std,
            min_pixels=config.min_pixels,
            seed=config.seed,
            resize_mode=self.segmenter.config.resize_mode,
            pairs=pairs,
            novel_pixels=config.novel_pixels,
        )
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = self._optimizer(params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.network: torch.nn.Module = model
        if self.context.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Unfrozen towers include parameters ClsCLIP never uses (ln_post, proj, logit_scale).
            # The only buffers are constants (the text causal mask); broadcasting them in place
            # at each forward would invalidate the text graph built just before it.
            self.network = DistributedDataParallel(
                model,
                device_ids=ids,
                find_unused_parameters=config.unfreeze != "none",
                broadcast_buffers=False,
            )
        self.step, self.best, self.epoch = 0, -math.inf, 0
        self._text_cache = TextCache(self._encode_frozen)

    def _optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        # torch's fused kernels (one pass over all parameters) where it has them: its default
        # on the CPU runs a loop of about 10 small ops per parameter tensor
        fused = all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum,
                                   weight_decay=c.weight_decay, fused=fused or None)  # fmt: skip
        return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, fused=fused or None)

    def _lr_factor(self, step: int) -> float:
        c = self.config
        return lr_factor(
            step,
            max_steps=c.max_steps,
            warmup_steps=c.warmup_steps,
            schedule=c.schedule,
            poly_power=c.poly_power,
            restart_steps=c.restart_steps,
        )

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Batches forever, a new shuffle (and augmentation) each epoch."""
        c = self.config
        while True:
            self.dataset.set_epoch(self.epoch)
            if self.context.enabled:
                sampler: Any = DistributedSampler(
                    self.dataset, self.context.world_size, self.context.rank, seed=c.seed
                )
                sampler.set_epoch(self.epoch)
            else:
                generator = torch.Generator().manual_seed(c.seed + self.epoch)
                sampler = RandomSampler(self.dataset, generator=generator)
            loader = DataLoader(
                self.dataset,
                batch_size=c.batch_size,
                sampler=sampler,
                num_workers=c.num_workers,
                drop_last=len(self.dataset) >= c.batch_size * self.context.world_size,
                pin_memory=self.device.type == "cuda",
            )
            yield from loader
            self.epoch += 1

    def _encode_frozen(self, names: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encode_class_names(names)

    def _text(self, names: list[str]) -> torch.Tensor:
        if self.config.unfreeze == "all":  # the text tower trains: no cache, gradients flow
            return self.model.encode_class_names(names)
        return self._text_cache.get(names)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        """bf16 autocast for the visual network on CUDA with ``amp`` (nothing elsewhere)."""
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_step(self, batch: dict[str, Any]) -> float:
        pixels = batch["pixels"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        # Class vectors in float32 outside autocast, exactly as inference computes them.
        text = self._text(list(batch["class_name"]))
        with self._autocast():
            logits = self.network(pixels, text)
        logits = F.interpolate(
            logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False
        )
        loss = masked_bce(logits[:, 0], target)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"training diverged: the loss at step {self.step + 1} is {float(loss)} (lr "
                f"{self.scheduler.get_last_lr()[0]:g}); nothing was saved from this step on. "
                "Lower lr, or resume from the last checkpoint with a smaller one"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            params = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def run(self) -> Path:
        """Train to ``max_steps`` (resuming from a checkpoint in ``output_dir``); returns the
        folder of the exported best model (``best/``, or ``last/`` without validation)."""
        self._resume()
        c = self.config
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.max_steps, initial=self.step, desc="training", unit="step")
        self.model.train()
        batches = self._batches()
        started, losses = time.perf_counter(), []
        while self.step < c.max_steps:
            losses.append(self._train_step(next(batches)))
            self.step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if self.step % c.log_every == 0 or self.step == c.max_steps:
                self._log({"step": self.step, "loss": sum(losses) / len(losses),
                           "lr": self.scheduler.get_last_lr()[0],
                           "seconds": time.perf_counter() - started})  # fmt: skip
                losses = []
            if c.val_every and (self.step % c.val_every == 0 or self.step == c.max_steps):
                self._validate()
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self._checkpoint()
        if bar is not None:
            bar.close()
        self._checkpoint()
        if self.context.is_main:
            self._segmenter().save_pretrained(self.output / "last")
        self.context.barrier()
        best = self.output / "best"
        return best if best.is_dir() else self.output / "last"

    def _segmenter(self) -> Segmenter:
        return Segmenter(self.model, self.segmenter.config, device=self.device)

    def _validate(self) -> None:
        from clsclip.evaluation import evaluate

        if self.context.is_main:
            c = self.config
            # A held-out draw (all-pairs episodes, another seed), never the test episodes.
            scores = evaluate(
                self._segmenter(),
                data_root=c.data_root,
                dataset=c.dataset,
                fold=c.fold,
                protocol="all-pairs",
                split=c.val_split,
                episodes=c.val_episodes,
                seed=c.seed + 1 if c.val_seed is None else c.val_seed,
                min_pixels=c.min_pixels,
                progress=False,
            )
            self._log(
                {"step": self.step, "val_miou": scores["miou"], "val_fb_iou": scores["fb_iou"]}
            )
            if scores["miou"] > self.best or not math.isfinite(self.best):
                self.best = scores["miou"]
                self._segmenter().save_pretrained(self.output / "best")
        self.model.train()
        self.context.barrier()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        keep = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.model.state_dict().items() if k in keep}

    def _checkpoint(self) -> None:
        if self.context.is_main:
            save_checkpoint(
                self.output,
                {
                    "step": self.step,
                    "epoch": self.epoch,
                    "best": self.best,
                    "model": self._trainable_state(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "config": self.config.to_dict(),
                },
            )
        self.context.barrier()

    def _resume(self) -> None:
        state = load_checkpoint(self.output)
        if state is None:
            return
        self._check_resumable(state)
        self.model.load_state_dict(state["model"], strict=False)
        kernels = [(g.get("fused"), g.get("foreach")) for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(state["optimizer"])
        for group, (fused, foreach) in zip(self.optimizer.param_groups, kernels, strict=True):
            # how a step is computed is this machine's choice, not the checkpoint's
            group["fused"], group["foreach"] = fused, foreach
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.epoch, self.best = (
            int(state["step"]),
            int(state["epoch"]),
            float(state["best"]),
        )
        logger.info("resumed from %s at step %d", self.output, self.step)

    def _check_resumable(self, state: dict[str, Any]) -> None:
        """A `ValueError` naming what differs when the checkpoint in the output folder belongs
        to another run: another model config, other trainable tensors or other shapes."""
        saved_config = state.get("config") or {}
        here = f"checkpoint {self.output / 'checkpoint.pt'} (step {state.get('step')})"
        saved_model, model = saved_config.get("model"), self.config.to_dict().get("model")
        if saved_model is not None and saved_model != model:
            fields = sorted(
                k
                for k in set(saved_model) | set(model or {})
                if saved_model.get(k) != (model or {}).get(k)
            )
            raise ValueError(
                f"{here} belongs to a run with another model config (differs in {fields}); "
                "resume with that config, or use another output_dir to start afresh"
            )
        expected = self._trainable_state()
        saved = state["model"]
        problems = [f"missing {k}" for k in sorted(set(expected) - set(saved))]
        problems += [f"unexpected {k}" for k in sorted(set(saved) - set(expected))]
        problems += [
            f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}"
            for k, v in sorted(expected.items())
            if k in saved and tuple(saved[k].shape) != tuple(v.shape)
        ]
        if problems:
            listed = "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else "")
            raise ValueError(
                f"{here} does not fit this run's trainable tensors ({listed}); use the run's own "
                "config, or another output_dir to start afresh"
            )

    def _log(self, record: dict[str, Any]) -> None:
        if not self.context.is_main:
            return
        logger.info(
            " ".join(
                f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
            )
        )
        self.output.mkdir(parents=True, exist_ok=True)
        with open(self.output / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def train(config: TrainConfig, *, progress: bool = True) -> Path:
    """Train a ClsCLIP model on a fold's base classes; returns the exported model folder.

    Runs as one process, or as many under ``torchrun`` (DistributedDataParallel, distributed
    sampler, only rank 0 writes). A run killed midway resumes from ``output_dir/checkpoint.pt``
    (model, optimizer, schedule and step; the data order restarts at an epoch boundary).
    """
    trainer = Trainer(config, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.context.close()
