"""``MultiTaskNet.fit(ParquetSource(...))``: training out of core, on one process or several.

The two passes are :mod:`polyhead.streaming`'s; this module ties them to the network's
training seams (:meth:`MultiTaskNet.train_epochs`, ``train_step``, ``evaluate_losses``):

* **Pieces.** The source's row groups. With ten or more, a ``validation_fraction`` of them
  (at least one) is held out whole for validation; with fewer, that fraction of the rows of each
  (chosen by the seed) is, and those rows are kept encoded in memory.
* **Ranks.** Under torch.distributed (:mod:`polyhead.distributed`) rank r summarises and trains
  on every world-size-th piece from r; validation pieces are shared out the same way and their
  losses summed over ranks. Every rank takes the same number of steps per epoch (the fewest
  any rank has rows for), so no rank waits for a gradient that never comes.
* **Determinism.** The same source, seed, world size and thread count give the same model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .. import distributed
from ..exceptions import PolyheadError
from ..features import FeatureEncoder
from ..io.parquet import ParquetSource
from ..streaming import EncodedCache, ShuffleBuffer, plan_source, prefetch
from .base import training_weights


def fit_source(net: Any, source: ParquetSource) -> None:
    """Fit ``net`` on ``source`` (see the module docstring)."""
    import torch

    from .net import _torch_session

    if distributed.world_size() > 1 and (not isinstance(net.weighting, str)
                                         or net.weighting not in ("equal", "dwa")):
        raise PolyheadError(f"weighting={net.weighting!r} is not available in a distributed fit "
                            "(its state is per process); use 'equal' or 'dwa'")
    fraction = net.validation_fraction
    plan = plan_source(net, source, fraction)
    rank, world, seed, by_piece = plan.rank, plan.world, plan.seed, plan.by_piece
    features, targets, summary = plan.features, plan.targets, plan.summary
    valid_pieces = plan.valid_pieces
    sample = summary.fitting_frame()
    Xs, ys = sample[features], sample[targets]
    net._prepare_fit(Xs, ys)
    net.features_ = FeatureEncoder(numeric=net.numeric_, max_categories=net.max_categories,
                                   embed_above=net.embed_above).fit(Xs, summary.column_stats())
    net._prepare_training(net.features_.transform(Xs), seed=seed)
    net.world_size_, net.streamed_ = world, True
    net.rows_seen_ = summary.rows

    def encode(frame: pd.DataFrame) -> list[np.ndarray]:
        x = net.features_.transform(frame[features])
        weights = training_weights(net.task_states_, frame[targets], None, require_labels=False)
        units = net.encode_targets(frame[targets], weights)
        arrays = [x]
        for v, w in units.values():
            arrays += [v, np.ones(v.shape, np.float32) if w is None else w]
        return arrays

    keys = [unit.key for unit in net._units]

    def unpack(arrays: list[Any]) -> tuple[Any, dict[str, tuple[Any, Any]]]:
        x = arrays[0]
        t = {}
        for i, key in enumerate(keys):
            v, w = arrays[1 + 2 * i], arrays[2 + 2 * i]
            t[key] = (v, None if bool((w == 1).all()) else w)
        return x, t

    my_train = plan.my_train
    if by_piece:
        local_rows = sum(p.num_rows for p in my_train)
    else:
        local_rows = sum(p.num_rows - int(m.sum()) if (m := plan.valid_mask(p)) is not None
                         else p.num_rows for p in my_train)
    batch = net._batch_size(distributed.all_min(local_rows) * world)
    net.batch_size_ = batch
    # every rank takes the same number of steps: the fewest any rank has full batches for
    steps = math.ceil(local_rows / batch) if world == 1 else distributed.all_min(local_rows // batch)
    if steps < 1:
        raise PolyheadError(f"too few training rows per process ({local_rows}) for a batch of {batch}")
    device = torch.device(net.device)
    buffer_rows = source.buffer_rows

    # validation rows: pieces shared out over ranks, or rows kept from this rank's pieces
    kept_valid: list[list[np.ndarray]] = []
    if not by_piece and fraction > 0:
        for p in my_train:
            mask = plan.valid_mask(p)
            assert mask is not None  # rows are drawn within pieces
            for frame in plan.frames(p):
                rows = mask[frame.index.to_numpy()]
                if rows.any():
                    kept_valid.append(encode(frame[rows]))
    # every rank must agree, whatever it holds itself
    has_valid = bool(valid_pieces) or int(distributed.all_sum(torch.tensor([len(kept_valid)])).item()) > 0

    def to_device(arrays: list[np.ndarray]) -> list[Any]:
        return [torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays]

    def piece_chunks(piece: Any) -> Any:
        """A training piece's rows, encoded (its validation rows left out)."""
        mask = plan.valid_mask(piece)
        for frame in plan.frames(piece):
            arrays = encode(frame)
            if mask is not None:
                keep = ~mask[frame.index.to_numpy()]
                arrays = [a[keep] for a in arrays]
            if len(arrays[0]):
                yield arrays

    def valid_chunks(piece: Any) -> Any:
        return (encode(frame) for frame in plan.frames(piece))

    row_bytes = sum(a[:1].nbytes for a in encode(sample.head(1)))
    cache = _cache(source, net.max_epochs, row_bytes * sum(p.num_rows for p in my_train + valid_pieces[rank::world]))
    epoch = 0
    fast_path: list[Any] = [None]  # decided on the first epoch
    own = net._own_batches
    k = net.n_ensemble_

    def train(generator: Any) -> Any:
        nonlocal epoch
        from .net import _expand

        epoch += 1
        if epoch == 1:
            from ..nn import fast_epoch

            fast_path[0] = (fast_epoch.FastEpoch(net) if world == 1 and device.type == "cpu"
                            and fast_epoch.applies(net, net._forward) else None)
        fast = fast_path[0]
        net.module_.train()
        rng = np.random.default_rng([seed, rank, epoch, 7])
        order = [my_train[i] for i in rng.permutation(len(my_train))]
        buffer = ShuffleBuffer(buffer_rows, rng)
        totals: list[Any] = []
        sizes: list[int] = []
        carry: list[np.ndarray] | None = None
        done = 0

        def steps_from(block: list[np.ndarray], last: bool) -> None:
            nonlocal carry, done
            if carry is not None:
                block = [np.concatenate([c, b]) for c, b in zip(carry, block, strict=True)]
                carry = None
            n = len(block[0])
            usable = n if last else (n // batch) * batch
            if usable < n:
                carry = [a[usable:] for a in block]
            if not usable:
                return
            tensors = to_device([a[:usable] for a in block])
            if fast is not None:  # the block as one scripted call (polyhead.nn.fast_epoch)
                order = (torch.stack([torch.from_numpy(rng.permutation(usable)) for _ in range(k)])
                         if own else torch.arange(usable))
                x_block, t_block = unpack(tensors)
                totals.append(fast.run(x_block, t_block, order.to(device)))
                sizes.append(usable)
                done += math.ceil(usable / batch)
                return
            if own:  # each member its own order of the block
                perm = torch.stack([torch.from_numpy(rng.permutation(usable)) for _ in range(k)]).to(device)
                tensors = [t[perm] for t in tensors]
            x_all, t_all = unpack(tensors)
            for start in range(0, usable, batch):
                if done >= steps:
                    return
                stop = min(start + batch, usable)
                if stop - start == 1 and net.norm == "batch":
                    continue
                rows = slice(start, stop) if not own else (slice(None), slice(start, stop))
                part = {name: (v[rows], None if w is None else w[rows]) for name, (v, w) in t_all.items()}
                if k > 1 and not own:
                    part = _expand(part, k)
                totals.append(net.train_step(x_all[rows], part))
                sizes.append(stop - start)
                done += 1

        def chunks() -> Any:
            for piece in order:
                fresh = piece_chunks(piece)
                yield from (fresh if cache is None else cache.chunks(piece.index, fresh, source.batch_rows))

        # reading and encoding run beside the training steps when a CPU is free for them
        with prefetch(chunks(), enabled=prefetching) as incoming:
            for arrays in incoming:
                for block in buffer.add(arrays):
                    steps_from(block, last=False)
                if done >= steps:
                    break
        for block in buffer.drain():
            steps_from(block, last=True)
        if carry is not None and done < steps:
            block, carry = carry, None
            steps_from(block, last=True)
        weights = torch.tensor(sizes, dtype=torch.float32, device=device)
        summed = distributed.all_sum(torch.cat([(weights @ torch.stack(totals)).reshape(-1),
                                                weights.sum().reshape(1)]))
        return summed[:-1] / summed[-1]

    def valid() -> Any:
        totals = torch.zeros(len(net.task_states_) + 1, device=device)
        counts = torch.zeros(len(net.task_states_), device=device)

        def add(arrays: list[np.ndarray]) -> None:
            x, t = unpack(to_device(arrays))
            losses = net.evaluate_losses(x, t)
            labelled = torch.as_tensor(_labelled(net, arrays), dtype=torch.float32, device=device)
            totals[:-1] += losses * labelled
            counts.add_(labelled)

        for arrays in kept_valid:
            add(arrays)
        for piece in valid_pieces[rank::world]:
            fresh = valid_chunks(piece)
            for arrays in (fresh if cache is None else cache.chunks(piece.index, fresh, source.batch_rows)):
                add(arrays)
        both = distributed.all_sum(torch.cat([totals[:-1], counts]))
        n = len(net.task_states_)
        return both[:n] / both[n:].clamp_min(1e-12)

    from ..parallel import available_cpus

    threads = net.n_threads
    if threads is None and world > 1:
        threads = max(1, available_cpus() // world)
    # a reader thread beside the training steps, when the steps leave a CPU free for it
    prefetching = (threads or net._threads_for(batch)) < available_cpus() // max(1, world) or \
        (world > 1 and available_cpus() > world)
    try:
        with _torch_session(seed, net._threads_for(batch) if threads is None else threads,
                            net._build, draws=net.dropout > 0):
            forward = None
            if world > 1:
                from torch.nn.parallel import DistributedDataParallel

                forward = DistributedDataParallel(net.module_,
                                                  **_no_buffer_sync(DistributedDataParallel))
            net.train_epochs(train, valid if has_valid else None, forward=forward)
        for p in net.module_.parameters():  # no gradient buffers kept with the model
            p.grad = None
    finally:
        if cache is not None:
            cache.close()
    net.validation_indices_ = np.arange(0)


def _cache(source: ParquetSource, epochs: int, need: int) -> EncodedCache | None:
    """An encoded cache of ``need`` bytes, when the source allows one and the disk has twice
    that free; otherwise None, with a warning saying why."""
    import shutil
    import tempfile
    import warnings

    from ..exceptions import PolyheadWarning

    if not source.cache or epochs < 2:
        return None
    directory = source.cache_dir or tempfile.gettempdir()
    free = shutil.disk_usage(directory).free
    if 2 * need > free:
        warnings.warn(f"not caching the encoded rows ({need / 2**30:.1f} GiB) in {directory}: "
                      f"{free / 2**30:.1f} GiB free; each epoch parses the Parquet files again "
                      "(ParquetSource(cache_dir=...) names another place)", PolyheadWarning, stacklevel=3)
        return None
    return EncodedCache(directory)


def _labelled(net: Any, arrays: list[np.ndarray]) -> list[float]:
    """Per task, the weight of its labels in a chunk (the denominator of its mean loss)."""
    out = [0.0] * len(net.task_states_)
    for i, unit in enumerate(net._units):
        w = arrays[2 + 2 * i]
        w = w.numpy() if hasattr(w, "numpy") else w
        if unit.block:
            for j, pos in enumerate(unit.positions):
                out[pos] = float(w[..., j].sum())
        else:
            out[unit.positions[0]] = float(w.sum())
    return out


def _no_buffer_sync(ddp: Any) -> dict[str, Any]:
    """DistributedDataParallel's keyword that stops it synchronising buffers at each forward:
    torch 2.13 names it ``forward_sync_buffers``, earlier versions ``broadcast_buffers``."""
    import inspect

    name = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
            else "broadcast_buffers")
    return {name: False}
