"""Data-parallel meta-training across processes (torch.distributed, started by torchrun).

    torchrun --standalone --nproc_per_node 4 experiments/meta_train.py --config default ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `ProcessGroup.from_env` joins the group (gloo on
the CPU, NCCL on GPUs, one GPU per local rank) or, started without torchrun, is a group of one
that does nothing. Each step's micro-batches of episodes are shared among the ranks, every rank
backpropagates its own, and the gradients are summed across ranks before the one optimizer
step that every rank takes alike: the update is the one a single process makes on the same
micro-batches, up to float summation order. Rank 0 alone validates, checkpoints and logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


class ProcessGroup:
    """The processes of one meta-training run: rank, world size, and the collectives it needs."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    @classmethod
    def from_env(cls, device: torch.device) -> tuple[ProcessGroup, torch.device]:
        """Join the group torchrun started (if any); returns it and this rank's device."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls(), device
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world_size, local_rank), device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: Iterable) -> list:
        """This rank's share of `items` (round robin)."""
        return list(items)[self.rank::self.world_size]

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights."""
        if self.world_size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        if self.world_size > 1:
            for p in parameters:
                if p.grad is None:  # a rank whose rollout never touched p still takes part
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each metric averaged over the ranks (every rank gets the same dict)."""
        if self.world_size == 1:
            return values
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return dict(zip(keys, (tensor / self.world_size).tolist()))

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
