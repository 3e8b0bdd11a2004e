"""One process or many: under ``torchrun`` the same command trains with DistributedDataParallel.

torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; with more than one process we join the group
(gloo on CPU, NCCL on CUDA), each rank draws its own crops (the data stream is keyed by rank) and
only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from lutfuse_deploy.errors import InputError


@dataclass
class RunContext:
    device: torch.device
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def setup(device: str = "cpu") -> RunContext:
    """The run context from torchrun's environment (a single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda asked for, but torch sees no CUDA GPU")
        dev = torch.device("cuda", local if world > 1 else (torch.device(device).index or 0))
        torch.cuda.set_device(dev)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise InputError(f"--device must be cpu or cuda[:N], got {device!r}")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return RunContext(dev, rank, world, local)
