"""Training on several processes: torchrun and DistributedDataParallel, set up from the
environment that torchrun gives each process.

``torchrun --nproc_per_node N -m cglib train ...`` starts N processes (one per GPU; on a CPU,
N processes of the gloo backend); across machines, torchrun's rendezvous (``--nnodes``,
``--rdzv-endpoint``) does the same. Each process trains a replica: DDP averages the gradients
of every update, so the replicas stay equal. What does not change with N: ``batch_size`` is
the global batch, each process drawing its slice of every global batch of the same keyed data
order (:mod:`cglib.batches`); the history pool of generated images is shared, every process
holding the same pool (:class:`SharedPool`). What does: each process holds 1/N of the batch.
The first process alone writes the run folder; every process resumes from the same checkpoint.
"""

from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cglib import env, losses


@dataclass(frozen=True)
class Context:
    """Where this process stands: its ``rank`` among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """True for the process that writes files and prints progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched() -> bool:
    """True inside a process started by torchrun for more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str = "auto", timeout_minutes: float = 30.0) -> Context:
    """This process's :class:`Context`: alone, or (under torchrun, ``WORLD_SIZE`` > 1) joined
    to the others through the process group, NCCL on GPUs (one per process: ``cuda:<local
    rank>``) and gloo on CPUs. A peer that does not answer within ``timeout_minutes`` (it
    died) fails the collective call, which stops the job."""
    if not launched():
        return Context(0, 1, env.pick_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = env.pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return Context(dist.get_rank(), dist.get_world_size(), chosen)


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def replicate(module: nn.Module, context: Context) -> nn.Module:
    """``module`` wrapped for data-parallel training when there are several processes (batch
    normalization synchronized across them); else ``module`` itself."""
    if not context.active:
        return module
    module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    # no buffer broadcast at each forward: synchronized batch norm keeps the running statistics
    # equal, and D runs several times per step. Newer torch calls the setting
    # forward_sync_buffers and warns at the old name, once per process.
    setting = ("forward_sync_buffers" if "forward_sync_buffers" in
               inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers")
    return DistributedDataParallel(module, device_ids=device_ids, **{setting: False})


def any_process(flag: bool, context: Context) -> bool:
    """True when ``flag`` is True on any process (all of them get the same answer): how
    processes agree to stop at the same step after an interrupt."""
    if not context.active:
        return flag
    value = torch.tensor([float(flag)], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class SharedPool(losses.ImagePool):
    """The history pool of generated images, the same on every process: each query gathers
    the generated images of all processes (the global batch, in rank order), queries the pool
    with them exactly as one process would, and hands each process its slice. With one process
    it is a plain :class:`cglib.losses.ImagePool`."""

    def __init__(self, size: int, rng: torch.Generator, context: Context) -> None:
        super().__init__(size, rng)
        self.context = context

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if not self.context.active or self.size == 0:
            return super().query(images)
        gathered = [torch.empty_like(images) for _ in range(self.context.world)]
        dist.all_gather(gathered, images.detach().contiguous())
        returned = super().query(torch.cat(gathered))
        share = images.shape[0]
        return returned[self.context.rank * share:(self.context.rank + 1) * share]
