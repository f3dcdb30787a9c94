"""torchrun support for the whole package: process group from the environment, per-rank device,
rank-0 helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clsclip.checks import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and local rank; a single process when not started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, requested_device: str | None = None) -> DistributedContext:
        """Read torchrun's variables and join the process group: nccl when this rank runs on
        CUDA, gloo on the CPU."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        context = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            device = context.device(requested_device)
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return context

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` under torchrun with CUDA."""
        if (
            self.enabled
            and (requested is None or requested == "cuda")
            and torch.cuda.is_available()
        ):
            return torch.device("cuda", self.local_rank)
        return resolve_device(requested)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, value: float, device: torch.device) -> float:
        """Sum a number over the ranks. The tensor lives on this rank's ``device``: NCCL
        reduces only CUDA tensors."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def mean(self, value: float, device: torch.device) -> float:
        """Average a number over the ranks (on ``device``, as `sum`)."""
        return self.sum(value, device) / self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
