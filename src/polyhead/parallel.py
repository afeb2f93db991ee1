"""The thread policy, in one place: how many threads a fit or a prediction may use.

Threads that wait for each other are the worst case on a shared machine: when another process
keeps a core busy, every parallel region of a two-thread computation waits for the thread that
was descheduled. We measured a small network's epoch at 3.3 s with two torch threads beside two
busy processes, against 0.03 s with one. So:

1. **Never more threads than this process may use**: the CPUs in its affinity mask, capped by a
   cgroup CPU quota (containers, CI runners) and by ``OMP_NUM_THREADS`` when set (as joblib sets
   it in the workers of scikit-learn's ``n_jobs``).
2. **One thread for small work**, where extra threads only add synchronisation: a network step
   under ``SMALL_WORK`` multiply-adds, a tree model on under ``SMALL_ROWS`` rows.
3. **One thread when the machine is busy**: when the load average already fills the CPUs, more
   threads would only wait for each other.
4. **Inner estimators run single-threaded under outer parallelism**: inside ``compare``'s
   parallel folds, ``Separate`` and ``TaskChain`` with ``n_jobs``, and scikit-learn's ``n_jobs``
   (via ``OMP_NUM_THREADS``), through :func:`single_threaded` (threadpoolctl caps BLAS and
   OpenMP; LightGBM and XGBoost get ``n_jobs=1``; torch ``set_num_threads(1)``).
5. **Independent fits side by side, one thread each**, where one estimator makes several fits
   of the same small data (``MultiTaskNet``'s numeric-embedding probes): on as many CPUs
   as no other work is running on right now (:func:`side_by_side`), else one after another.

``n_jobs`` follows scikit-learn: None means 1 (or what the policy allows), -1 all CPUs this
process may use, -2 all but one, and so on.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Multiply-adds per network step below which one thread is faster than two.
SMALL_WORK = 2_000_000
#: Multiply-adds per step below which two single-threaded fits side by side finish sooner than
#: the same fits one after another on every CPU (the default net's two embedding probes).
#: Measured on 2 CPUs, the default fit side by side against one after another: 0.70x at 2.8M
#: (2,000 rows x 16 columns), 0.96x at 5.2M, 0.80x at 6.7M (abalone), and 1.09x, 1.37x, 1.46x
#: and 1.16x at 10.7M, 11.8M, 13.1M and 17.0M, where two threads already speed up one fit.
SIDE_BY_SIDE_WORK = 8_000_000
#: Rows below which a tree model is fitted with one thread.
SMALL_ROWS = 20_000

_local = threading.local()


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, a cgroup quota, ``OMP_NUM_THREADS``."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, quota)
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.strip().isdigit() and int(omp) > 0:
        count = min(count, int(omp))
    return max(1, count)


def _cgroup_quota() -> int | None:
    """CPUs a cgroup quota allows (v2 ``cpu.max``, v1 ``cfs_quota_us``), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as fh:
            quota_us = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii") as fh:
            period_us = int(fh.read())
        if quota_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def busy() -> bool:
    """Whether other work already fills this process's CPUs (1-minute load average)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return False
    return load >= available_cpus() - 0.5


def others_running(samples: int = 5, interval: float = 0.002) -> int:
    """Threads of other work that are runnable now: the least of a few readings, ``interval``
    seconds apart, of Linux's count of runnable threads (``/proc/loadavg``), less the one
    reading it; elsewhere the 1-minute load average.

    Unlike the load average it does not remember this process's own recent work, so fits in
    a loop decide alike; the least reading passes over thread pools that spin for a moment
    after their work (OpenMP's), while work that keeps a CPU busy is runnable in every one."""
    import time

    try:
        counts = []
        for i in range(max(1, samples)):
            if i:
                time.sleep(interval)
            with open("/proc/loadavg", encoding="ascii") as fh:
                counts.append(int(fh.read().split()[3].split("/")[0]))
        return max(0, min(counts) - 1)
    except (OSError, ValueError, IndexError):
        try:
            return round(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0


def side_by_side(n: int) -> int:
    """Workers for ``n`` independent single-threaded fits: one per CPU that this process may use
    and no other work is running on, at most ``n``; 1 (one after another) under outer
    parallelism or when fewer than two CPUs are free."""
    if n < 2 or nested():
        return 1
    free = available_cpus() - others_running()
    return max(1, min(n, free)) if free >= 2 else 1


def run_side_by_side(calls: Sequence[Callable[[], T]], workers: int,
                     cancel: threading.Event | None = None) -> list[T]:
    """The results of ``calls``: with ``workers > 1``, each in its own thread and single-threaded
    inside (as under outer parallelism); else one after another in this thread.

    When a call fails, or this thread is interrupted (Ctrl-C) while it waits, ``cancel`` is set
    so that calls which watch it stop early rather than run to their end; then the first
    failure is raised (or the interrupt), once every call has returned."""
    if workers <= 1:
        return [call() for call in calls]
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    def run(call: Callable[[], T]) -> T:
        with _outer():  # this worker thread's own record of the outer parallelism
            return call()

    with single_threaded(), ThreadPoolExecutor(workers, thread_name_prefix="polyhead") as pool:
        futures = [pool.submit(run, call) for call in calls]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            if cancel is not None:
                cancel.set()
            raise
        failed = [e for f in futures if f in done and (e := f.exception()) is not None]
        if failed and cancel is not None:
            cancel.set()
    if failed:
        raise failed[0]
    return [f.result() for f in futures]


def nested() -> bool:
    """Whether we run inside outer parallelism (so this fit must stay single-threaded)."""
    return getattr(_local, "depth", 0) > 0


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Everything inside runs single-threaded: torch, BLAS and OpenMP pools, and polyhead's
    own choices (tree models get ``n_jobs=1``)."""
    from threadpoolctl import threadpool_limits

    torch_threads = _torch_threads(1)
    try:
        with _outer(), threadpool_limits(limits=1):
            yield
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)


@contextlib.contextmanager
def _outer() -> Iterator[None]:
    """This thread runs inside outer parallelism (what :func:`nested` reads)."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def _torch_threads(n: int) -> int | None:
    """Set torch's threads to ``n`` if torch is loaded; return the previous count."""
    import sys

    if "torch" not in sys.modules:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


def resolve_n_jobs(n_jobs: int | None) -> int:
    """scikit-learn's meaning of ``n_jobs``, bounded by :func:`available_cpus`."""
    cpus = available_cpus()
    if n_jobs is None:
        return 1
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return max(1, min(int(n_jobs), cpus))


def net_threads(work: float, requested: int | None = None) -> int:
    """Torch threads for a network whose step costs ``work`` multiply-adds."""
    if requested is not None:
        return max(1, min(int(requested), available_cpus()))
    if nested() or work < SMALL_WORK or busy():
        return 1
    return available_cpus()


def tree_threads(rows: int, n_jobs: int | None) -> int:
    """Threads for one tree model (forest, booster) on ``rows`` rows."""
    if n_jobs is not None:
        return 1 if nested() else resolve_n_jobs(n_jobs)
    if nested() or rows < SMALL_ROWS or busy():
        return 1
    return available_cpus()
