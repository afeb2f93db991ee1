"""Whole epochs in one TorchScript call, with a hand-written backward pass, for plain MLPs
and packed ensembles of them.

On the tutorial configuration (a 20-10 ReLU trunk, a regression and a 29-class head, batch 32)
a step through autograd and ``nn.Module`` cost 0.53 ms, of which the arithmetic is a small
part: ``benchmarks/step_probe.py`` measured 0.23 ms for the same step written out by hand in
Python, and the per-op cost of the Python interpreter is most of what is left. So for a network
that is only linear layers with ReLU and one fused output layer, trained on losses with a
closed-form gradient, the whole epoch runs as one TorchScript function:

* forward ``z_l = a_{l-1} W_l^T + b_l``, ``a_l = relu(z_l)``, ``o = a_L W^T + b``;
* each task's loss and its gradient with respect to its output columns, as its kind declares
  (:meth:`polyhead.kinds.Kind.closed_form_loss`): squared error, logistic, softmax
  cross-entropy or logistic over several label columns (a masked mean over every labelled
  row and label, as a multilabel task's loss is), masked and weighted like the kinds' own
  losses (a weighted mean over the labelled rows), times the task's weight (the ``"equal"`` loss weighting);
* backward ``dW = g^T a``, ``db = sum(g)``, ``g_{l-1} = (g W) * (z_{l-1} > 0)``, into each
  parameter's ``.grad``;
* a packed ensemble (``n_ensemble=K``, ``ensemble="packed"``) does the same with batched
  products, ``(K, batch, features)``, every member on its own shuffle, each member's gradient
  that of its own loss (as :meth:`MultiTaskNet.train_step` scales it);
* piecewise-linear embeddings of numeric inputs (``numeric_embedding="ple"``, no category
  embeddings): each batch's encoding on the fixed bins, the per-feature map and ReLU in the
  forward pass, and their weight and bias gradients from the first layer's input gradient
  (summed over members, who share the embedding);
* the fused AdamW kernel on the optimiser's own state (so schedulers, ``state_dict`` and a later
  autograd step see the same optimiser).

Mini-batches are the same slices of the same shuffle as the autograd loop's, and the result is
deterministic for a seed. :func:`applies` says when this path is taken; anything else
(periodic or category embeddings, shared-weight ensembles, norms, dropout, experts, task layers, other activations or losses,
other loss weightings, ``torch.compile``, a distributed wrapper, a GPU) trains through autograd.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

from .model import MultiTaskModule

#: Set False to train every network through autograd (to compare the two paths).
ENABLED = True
#: Loss codes understood by the epoch function (what :meth:`Kind.closed_form_loss` returns).
CODES = {"squared_error": 0, "logistic": 1, "softmax": 2, "logistic_columns": 3}

#: Above this many values (K x rows x inputs), an epoch gathers each batch's rows on its own
#: instead of shuffling whole copies of the inputs (64 MiB of float32).
GATHER_LIMIT = 1 << 24

_EPOCH: Any = None
_COMPILING = threading.Lock()


def _script() -> Any:
    """The epoch function, compiled once per process (about half a second)."""
    global _EPOCH
    with _COMPILING:  # fits side by side in threads compile it once
        if _EPOCH is None:
            _EPOCH = torch.jit.script(_epoch)
    return _EPOCH


def applies(net: Any, forward: Any) -> bool:
    """Whether ``net``'s module, optimiser and tasks can take the scripted epoch."""
    from .optim import LeanAdamW
    from .weighting.equal import Equal

    module = net.module_
    if not ENABLED or forward is not module or not isinstance(module, MultiTaskModule):
        return False
    if module.experts is not None or module.task_layers or not module.fused:
        return False
    if module.k > 1 and not net._own_batches:  # shared-weight (batch) ensembles: autograd
        return False
    if not (getattr(module.inputs, "identity", False) or _plain_ple(module.inputs)):
        return False
    if type(net.weighting_) is not Equal:
        return False
    if type(net.optimizer_) is not LeanAdamW or getattr(net.optimizer_, "_kernel", None) is None:
        return False
    if any(g["amsgrad"] or g["maximize"] for g in net.optimizer_.param_groups):
        return False
    if next(module.parameters()).device.type != "cpu":
        return False
    from .layers import PackedLinear

    linear = nn.Linear if module.k == 1 else PackedLinear
    layers = list(module.trunk)
    return (len(layers) % 2 == 0 and all(type(m) is linear for m in layers[0::2])
            and all(type(m) is nn.ReLU for m in layers[1::2]) and type(module.out) is linear
            and all(t.closed_form_loss() in CODES for t in net.task_states_))


def _plain_ple(inputs: Any) -> bool:
    """Inputs that are scaled columns and piecewise-linear embeddings, nothing else."""
    from .inputs import InputBlock, PiecewiseLinear

    return (type(inputs) is InputBlock and type(inputs.numeric) is PiecewiseLinear
            and not inputs.codes)


def _ple_state(inputs: Any) -> list[torch.Tensor]:
    """What the epoch function needs of a piecewise-linear input block: the passthrough and
    embedded columns and the encoding's constants (:meth:`PiecewiseLinear.constants`), or
    nothing for plain inputs."""
    if getattr(inputs, "identity", False):
        return []
    return [inputs.passthrough, inputs.embedded_index, *inputs.numeric.constants()]


class FastEpoch:
    """``epoch(x, targets, generator)``: one epoch, returning the mean per-task losses (as
    :meth:`MultiTaskNet.run_epoch` does)."""

    def __init__(self, net: Any) -> None:
        self.net = net
        module = net.module_
        linear = [m for m in module.trunk if not isinstance(m, nn.ReLU)] + [module.out]
        self.k = int(module.k)
        self.params = [t for m in linear for t in (m.weight, m.bias)]
        self.ple = _ple_state(module.inputs)
        self.ple_params = [module.inputs.numeric.weight, module.inputs.numeric.bias] if self.ple else []
        for p in self.params + self.ple_params:  # written in place by the epoch function
            p.grad = torch.zeros_like(p)
        self.heads = [[module.spans[t.name][0], module.spans[t.name][1], CODES[t.closed_form_loss()]]
                      for t in net.task_states_]
        self.task_weights = [float(w) for w in net.weighting_.task_weights.tolist()]
        self.epoch = _script()

    def __call__(self, x: torch.Tensor, targets: dict[str, tuple[Any, Any]], generator: Any) -> torch.Tensor:
        n = x.shape[0]
        if self.k == 1:
            perm = torch.randperm(n, generator=generator)
        else:  # packed members: each its own shuffle, as in MultiTaskNet.run_epoch
            perm = torch.stack([torch.randperm(n, generator=generator) for _ in range(self.k)])
        return self.run(x, targets, perm)

    def run(self, x: torch.Tensor, targets: dict[str, tuple[Any, Any]], perm: torch.Tensor) -> torch.Tensor:
        """Mini-batches of ``x[perm]`` in order (``perm``: ``(n,)``, or ``(K, n)`` for a packed
        ensemble); the mean per-task losses. A streaming fit calls this per buffer block."""
        from ..models.net import _task_targets

        net = self.net
        net.module_.train()
        for p in self.params + self.ple_params:
            if p.grad is None:  # an autograd step in between cleared it
                p.grad = torch.zeros_like(p)
        per_task = _task_targets(getattr(net, "_units", None), targets)
        values, weights = [], []
        for t in net.task_states_:
            v, w = per_task[t.name]
            values.append(v if v.dtype == torch.int64 else v.to(torch.float32))
            weights.append(torch.ones(v.shape, dtype=torch.float32) if w is None else w.to(torch.float32))
        opt = net.optimizer_
        opt._opt_called = True  # the optimiser steps in the epoch: schedulers may follow
        if opt._lists is None:
            opt._build()
        groups = []
        for group, (params, avgs, sqs, steps) in zip(opt.param_groups, opt._lists, strict=True):
            if params:
                groups.append((params, [p.grad for p in params], avgs, sqs, steps,
                               float(group["lr"]), float(group["weight_decay"]),
                               float(group["betas"][0]), float(group["betas"][1]), float(group["eps"])))
        with torch.no_grad():  # every gradient is written by hand
            return self.epoch(x, perm, int(net.batch_size_), self.k, self.params,
                              [p.grad for p in self.params], self.heads, values, weights,
                              self.task_weights, groups, GATHER_LIMIT, self.ple,
                              self.ple_params, [p.grad for p in self.ple_params])


def _linear(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, packed: bool) -> torch.Tensor:
    if packed:  # (K, B, in) @ (K, in, out) + (K, 1, out)
        return torch.baddbmm(bias, a, weight)
    return torch.addmm(bias, a, weight.t())


def _backward(g: torch.Tensor, a: torch.Tensor, weight: torch.Tensor, grad_w: torch.Tensor,
              grad_b: torch.Tensor, packed: bool, more: bool) -> torch.Tensor:
    """A linear layer's weight and bias gradients (in place) and its input's gradient."""
    if packed:
        torch.bmm(a.transpose(1, 2), g, out=grad_w)
        torch.sum(g, 1, keepdim=True, out=grad_b)
        return torch.bmm(g, weight.transpose(1, 2)) if more else g
    torch.mm(g.t(), a, out=grad_w)
    torch.sum(g, 0, out=grad_b)
    return g.mm(weight) if more else g


def _epoch(x: torch.Tensor, perm: torch.Tensor, batch: int, k: int, params: list[torch.Tensor],
           grads: list[torch.Tensor], heads: list[list[int]], values: list[torch.Tensor],
           weights: list[torch.Tensor], task_weights: list[float],
           groups: list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor],
                              list[torch.Tensor], list[torch.Tensor], float, float, float, float,
                              float]], gather_limit: int, ple: list[torch.Tensor],
           ple_params: list[torch.Tensor], ple_grads: list[torch.Tensor]) -> torch.Tensor:
    packed = k > 1
    embed = len(ple) > 0
    n = x.shape[0]
    # one gather per epoch, then contiguous slices; for a large x (its K shuffled copies would
    # cost more than GATHER_LIMIT values) one gather per batch instead
    whole = perm.numel() * x.shape[1] <= gather_limit
    xs, ys, ws = x, values, weights
    if whole:
        xs = x[perm]  # (n, d), or (K, n, d): every member its own order
        ys = [v[perm] for v in values]
        ws = [w[perm] for w in weights]
    n_layers = len(params) // 2 - 1
    totals = torch.zeros(len(heads), dtype=torch.float32)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        idx = perm[:, start:stop] if packed else perm[start:stop]
        a = (xs[:, start:stop] if packed else xs[start:stop]) if whole else x[idx]
        t = a  # the embedding's encoding and output (unused without one)
        h = a
        if embed:  # as InputBlock: [passthrough columns, relu(encode(x) W + b) per feature]
            t = (a.index_select(-1, ple[1]).unsqueeze(-1) - ple[2]) / ple[3]
            t = torch.maximum(torch.minimum(t, ple[5]), ple[4])
            t = torch.where(ple[6], t, torch.zeros_like(t))
            h = torch.relu_(torch.einsum("...ft,ftd->...fd", t, ple_params[0]) + ple_params[1])
            a = torch.cat([a.index_select(-1, ple[0]), h.flatten(-2)], -1)
        inputs: list[torch.Tensor] = []  # each layer's input: x, then the ReLU outputs
        for i in range(n_layers):
            inputs.append(a)
            a = torch.relu_(_linear(a, params[2 * i], params[2 * i + 1], packed))
        o = _linear(a, params[-2], params[-1], packed)
        g = torch.zeros_like(o)
        losses = torch.zeros(len(heads), dtype=torch.float32)
        for j in range(len(heads)):
            lo, hi, code = heads[j][0], heads[j][1], heads[j][2]
            if whole:
                w = ws[j][:, start:stop] if packed else ws[j][start:stop]
                y = ys[j][:, start:stop] if packed else ys[j][start:stop]
            else:
                w, y = weights[j][idx], values[j][idx]
            # each loss: a weighted mean over every member's labelled rows; times K, each
            # member's gradient is that of its own loss (as in MultiTaskNet.train_step)
            inv = 1.0 / w.sum().clamp_min(1e-12)
            step = w * (inv * task_weights[j] * k)
            if code == 0:  # squared error, on the standardised target
                d = o[..., lo] - y
                losses[j] = (w * d * d).sum() * inv
                g[..., lo] = 2.0 * d * step
            elif code == 1:  # logistic
                zz = o[..., lo]
                losses[j] = (w * (torch.nn.functional.softplus(zz) - y * zz)).sum() * inv
                g[..., lo] = (torch.sigmoid(zz) - y) * step
            elif code == 3:  # logistic per label column; a missing label has weight 0
                zz = o[..., lo:hi]
                losses[j] = (w * (torch.nn.functional.softplus(zz) - y * zz)).sum() * inv
                g[..., lo:hi] = (torch.sigmoid(zz) - y) * step
            else:  # softmax cross-entropy; a missing label (code -1) has weight 0
                logp = torch.log_softmax(o[..., lo:hi], dim=-1)
                cls = y.clamp_min(0).unsqueeze(-1)
                losses[j] = -(w * logp.gather(-1, cls).squeeze(-1)).sum() * inv
                p = logp.exp()
                p.scatter_add_(-1, cls, -torch.ones(cls.shape, dtype=p.dtype))
                g[..., lo:hi] = p * step.unsqueeze(-1)
        totals += losses * float(stop - start)
        g = _backward(g, a, params[-2], grads[-2], grads[-1], packed, n_layers > 0 or embed)
        for i in range(n_layers - 1, -1, -1):
            # ReLU's backward in one op: zero where the ReLU's output is (where its input was <= 0)
            g = torch.ops.aten.threshold_backward(g, a if i == n_layers - 1 else inputs[i + 1], 0.0)
            g = _backward(g, inputs[i], params[2 * i], grads[2 * i], grads[2 * i + 1], packed,
                          i > 0 or embed)
        if embed:  # the embedded columns' part of the input gradient, through ReLU and the map
            gh = g.narrow(-1, ple[0].numel(), h.shape[-2] * h.shape[-1]).reshape(h.shape)
            gz = torch.ops.aten.threshold_backward(gh, h, 0.0)
            n_f, n_d = h.shape[-2], h.shape[-1]
            ple_grads[0].copy_(torch.einsum("nft,nfd->ftd", t.reshape(-1, n_f, t.shape[-1]),
                                            gz.reshape(-1, n_f, n_d)))
            torch.sum(gz.reshape(-1, n_f, n_d), 0, out=ple_grads[1])
        for group in groups:
            torch._foreach_add_(group[4], 1)
            torch._fused_adamw_(group[0], group[1], group[2], group[3], [], group[4], lr=group[5],
                                beta1=group[7], beta2=group[8], weight_decay=group[6], eps=group[9],
                                amsgrad=False, maximize=False)
    return totals / float(n)
