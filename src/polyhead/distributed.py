"""Training on several processes: torch.distributed, launched by polyhead or by torchrun.

polyhead does not schedule anything itself. A distributed fit is PyTorch's own
DistributedDataParallel: every process (a *rank*) runs the same streaming fit
(:mod:`polyhead.streaming`) on its own row groups of a Parquet source; the statistics of pass 1
are merged across ranks so that every rank fits the same encoder and tasks; gradients are
averaged after every step; validation losses are summed over ranks, so every rank takes the
same early-stopping decisions; rank 0 alone writes the model (atomically).

Three ways to start one, all running the same function, :func:`polyhead.cli.fit`'s work:

* ``polyhead fit data/ -o model --nproc 4``: four processes on this machine (:func:`launch`);
* ``torchrun --nnodes 2 --nproc-per-node 8 ... -m polyhead fit data/ -o model``: the process
  group comes from torchrun's environment (:func:`init_from_env`), on one machine or several;
* Ray Train's ``TorchTrainer`` or Spark's ``TorchDistributor`` calling
  ``polyhead.cli.main(["fit", ...])`` in each worker (recipes in ``docs/scale.md``).

The backend is gloo on CPUs and nccl when the model trains on a CUDA device.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from .exceptions import PolyheadError

#: How long a rank waits for the others at a collective before giving up.
TIMEOUT = datetime.timedelta(minutes=10)


def active() -> bool:
    """Whether this process belongs to an initialised process group of more than one rank."""
    import sys

    if "torch" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    if not active():
        return 0
    import torch.distributed as dist

    return int(dist.get_rank())


def world_size() -> int:
    if not active():
        return 1
    import torch.distributed as dist

    return int(dist.get_world_size())


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher) set this process's rank and world size."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group a launcher described in the environment (torchrun's variables).
    True when this call created it; False when there is none, or one exists already (Ray
    Train's, which its owner will close)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) < 2:
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return True


def planned_rank() -> int:
    """This process's rank, from an existing group or the launcher's environment (0: none)."""
    if active():
        return rank()
    if launched_by_torchrun():
        return int(os.environ["RANK"])
    return 0


def all_gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (a picklable object made by polyhead itself), in rank order."""
    if not active():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def all_sum(tensor: Any) -> Any:
    """The sum of ``tensor`` over ranks (in place; returned)."""
    if active():
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_min(value: int) -> int:
    if not active():
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(index: int, nproc: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.environ.update({"RANK": str(index), "LOCAL_RANK": str(index), "WORLD_SIZE": str(nproc),
                       "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    with process_group():
        fn(*args)


@contextlib.contextmanager
def process_group(device: str = "cpu") -> Iterator[None]:
    """Inside: this process is part of the group its environment describes, if any (one
    created here is closed on the way out)."""
    joined = init_from_env(device)
    try:
        yield
    finally:
        if joined:
            import torch.distributed as dist

            with contextlib.suppress(RuntimeError, ValueError):
                dist.destroy_process_group()


def launch(nproc: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``nproc`` processes on this machine, forming one process group.

    A rank that fails stops the others; its error comes back as one line naming the rank.
    """
    if nproc < 1:
        raise PolyheadError(f"--nproc {nproc} must be at least 1")
    if nproc == 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    try:
        mp.start_processes(_worker, args=(nproc, _free_port(), fn, args), nprocs=nproc,
                           join=True, start_method="spawn")
    except mp.ProcessRaisedException as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "failed"
        if ": " in last and last.split(": ", 1)[0].rsplit(".", 1)[-1] in ("PolyheadError", "TaskError", "ModelFileError", "OutputPathError"):
            last = last.split(": ", 1)[1]
        raise PolyheadError(f"distributed fit: rank {exc.error_index} failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise PolyheadError(f"distributed fit: rank {exc.error_index} died (exit code "
                            f"{exc.exit_code}); the other ranks were stopped and no model was written") from None
