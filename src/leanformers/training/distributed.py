"""torchrun / DDP: detect the process group, shard the data, agree across processes.

`torchrun --nproc_per_node=N script.py` sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; the Trainer then
joins the group (gloo on CPU, nccl on GPU), wraps the model in DistributedDataParallel and gives each process every
N-th example of the epoch's shuffled order (as torch's DistributedSampler). Without torchrun all of this is a no-op.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import threading

import torch
import torch.distributed as dist
from torch import nn

_ALONE = threading.local()  # set while rank 0 evaluates on its own: the data is then not sharded


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and not getattr(_ALONE, "on", False)


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    return dist.get_rank() if _active() else 0


@contextlib.contextmanager
def single_process_view():
    """Inside, this process sees itself alone (rank 0 of 1): evaluation on rank 0 reads the whole set."""
    _ALONE.on = True
    try:
        yield
    finally:
        _ALONE.on = False


def setup(args) -> None:
    """Join torchrun's process group once (no-op for a single process or when the caller already joined)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    backend = args.ddp_backend or ("nccl" if args.n_gpu else "gloo")
    if args.n_gpu:
        torch.cuda.set_device(args.local_process_index)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=args.ddp_timeout))


def wrap(model: nn.Module, args) -> nn.Module:
    """DistributedDataParallel around the model when several processes train; the model itself otherwise."""
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [args.local_process_index] if args.n_gpu else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over all processes (itself with one process)."""
    if world_size() <= 1:
        return value
    value = value.detach().clone().float()
    dist.all_reduce(value)
    return value / world_size()


def any_true(flag: bool) -> bool:
    """True on every process when it is True on any (e.g. one of them got Ctrl-C)."""
    if world_size() <= 1:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast(obj):
    """Rank 0's Python object, on every process (metrics computed on rank 0 only)."""
    if world_size() <= 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def epoch_indices(num_examples: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = False,
                  lengths: list[int] | None = None, group_size: int | None = None) -> list[int]:
    """This process's examples for `epoch`, in order: a permutation seeded with seed + epoch (the order transformers'
    seedable sampler and torch's DistributedSampler both draw), padded by wrapping so every process gets as many, then
    every world_size-th index from this rank. `lengths` groups similar lengths (group_by_length) within megabatches."""
    world, me = world_size(), rank()
    if not shuffle:
        order = list(range(num_examples))
    else:
        generator = torch.Generator().manual_seed(seed + epoch)
        if lengths is None:
            order = torch.randperm(num_examples, generator=generator).tolist()
        else:
            order = length_grouped_order(lengths, group_size, generator)
    if world > 1:
        if drop_last:
            order = order[: num_examples - num_examples % world]
        else:
            padding = -num_examples % world
            order = order + (order * (padding // max(num_examples, 1) + 1))[:padding]
        order = order[me::world]
    return order


def length_grouped_order(lengths: list[int], group_size: int, generator: torch.Generator) -> list[int]:
    """transformers' LengthGroupedSampler: shuffle, cut into megabatches of min(50, n / (4 batches)) batches, sort
    each by length (longest first), and put the overall longest example first (so memory errors show at once)."""
    indices = torch.randperm(len(lengths), generator=generator).tolist()
    size = max(min(len(lengths) // (group_size * 4), 50), 1) * group_size
    megabatches = [sorted(indices[i:i + size], key=lambda j: lengths[j], reverse=True)
                   for i in range(0, len(indices), size)]
    longest = max(range(len(megabatches)), key=lambda m: lengths[megabatches[m][0]])
    megabatches[0][0], megabatches[longest][0] = megabatches[longest][0], megabatches[0][0]
    return [i for megabatch in megabatches for i in megabatch]
