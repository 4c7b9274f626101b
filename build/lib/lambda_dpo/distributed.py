"""Data parallelism for the training loop, a no-op in a single process.

Ray Train (``TorchTrainer``) sets up the ``torch.distributed`` process group before the loop
runs; these helpers read it, so ``train`` is the same function with one worker or many.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of data-parallel workers (0, 1 outside a group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (writing what it makes to the run directory); the others then
    run it and find the files there instead of computing them again."""
    _, world = rank_and_world()
    if world > 1 and dist.get_rank() != 0:
        dist.barrier()
    yield
    if world > 1 and dist.get_rank() == 0:
        dist.barrier()


def on_rank_zero(compute, *, timeout: timedelta = timedelta(days=1)):
    """``compute()`` on rank 0 only; every worker returns its (picklable) result.

    The others wait in a broadcast over a gloo group of its own, whose ``timeout`` covers a
    long computation (lm-eval benchmarks can outlast the default group's NCCL timeout).
    """
    rank, world = rank_and_world()
    if world == 1:
        return compute()
    group = dist.new_group(backend="gloo", timeout=timeout)
    payload: list = [None]
    try:
        if rank == 0:
            try:
                payload = [(True, compute())]
            except Exception as error:  # the others must not wait a day for a result that never comes
                dist.broadcast_object_list([(False, repr(error))], src=0, group=group)
                raise
        dist.broadcast_object_list(payload, src=0, group=group)
    finally:
        dist.destroy_process_group(group)
    succeeded, value = payload[0]
    if not succeeded:
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


def global_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over all workers (``values`` itself with one worker), on
    the device ``values`` came from (NCCL reduces only GPU tensors, so CPU values visit the GPU)."""
    _, world = rank_and_world()
    if world == 1:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device
    total = values.detach().to(device, copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(values.device)


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when there are several workers."""
    _, world = rank_and_world()
    if world == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: torch.nn.Module, sync: bool):
    """Skip DDP's all-reduce on micro-batches before the last of a gradient-accumulation step."""
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()
