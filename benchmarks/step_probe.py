"""Where the tutorial configuration's training step goes (the speed issue's 5x target).

Times, per optimiser step on the tutorial configuration (abalone, a 20-10 ReLU trunk, a
regression and a 29-class head, batch 32, one thread), in one process:

* ``polyhead``: ``MultiTaskNet(**TUTORIAL)``'s own training loop (the scripted epoch of
  :mod:`polyhead.nn.fast_epoch`; ``--autograd`` turns it off);
* ``plain loop``: the idiomatic PyTorch loop of ``benchmarks/run.py`` (TensorDataset,
  DataLoader, ``nn.Module``, ``torch.optim.Adam``);
* ``hand-written``: the same network's forward and backward written out as matrix products,
  the losses' gradients too (MSE and softmax cross-entropy), and the fused AdamW kernel: no
  autograd, no modules, in Python: what a step costs without autograd's and the modules'
  per-call overhead but with the interpreter's.

    python benchmarks/step_probe.py [--epochs 30] [--autograd]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def polyhead_step(epochs: int) -> float:
    import run

    import polyhead

    X_tr, _, y_tr, _ = run._split()
    params = {**run.TUTORIAL, "max_epochs": epochs, "n_threads": 1}
    polyhead.MultiTaskNet(tasks=run.TASKS, **{**params, "max_epochs": 1}).fit(X_tr, y_tr)
    model = polyhead.MultiTaskNet(tasks=run.TASKS, random_state=0, **params).fit(X_tr, y_tr)
    seconds = sum(r["seconds"] for r in model.history_)
    return seconds / (epochs * -(-len(X_tr) // 32)) * 1000


def plain_step() -> float:
    """``run.fit_plain_torch``: 150 epochs of the plain loop."""
    import run
    import torch

    torch.set_num_threads(1)
    out = run.fit_plain_torch()
    X_tr = run._split()[0]
    return out["seconds"] / (150 * -(-len(X_tr) // 32)) * 1000


def hand_written_step(epochs: int) -> float:
    import run
    import torch

    from polyhead.features import FeatureEncoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    X_tr, _, y_tr, _ = run._split()
    x = torch.tensor(FeatureEncoder().fit(X_tr).transform(X_tr))
    yr = torch.tensor(((y_tr["rings"] - y_tr["rings"].mean()) / y_tr["rings"].std()).to_numpy(),
                      dtype=torch.float32)
    yc = torch.tensor(y_tr["rings_class"].to_numpy() - 1, dtype=torch.long)
    n, d = x.shape
    sizes = [(20, d), (10, 20), (30, 10)]
    params = []
    for out, inp in sizes:
        params += [torch.randn(out, inp) * (1 / inp) ** 0.5, torch.zeros(out)]
    grads = [torch.zeros_like(p) for p in params]
    avg = [torch.zeros_like(p) for p in params]
    sq = [torch.zeros_like(p) for p in params]
    steps = [torch.zeros(()) for _ in params]
    W1, b1, W2, b2, W3, b3 = params
    batch = 32

    def epoch() -> None:
        perm = torch.randperm(n)
        xs, rs, cs = x[perm], yr[perm], yc[perm]
        for s in range(0, n, batch):
            xb, rb, cb = xs[s:s + batch], rs[s:s + batch], cs[s:s + batch]
            m = xb.shape[0]
            z1 = torch.addmm(b1, xb, W1.t())
            a1 = z1.relu()
            z2 = torch.addmm(b2, a1, W2.t())
            a2 = z2.relu()
            o = torch.addmm(b3, a2, W3.t())
            g = torch.empty_like(o)
            torch.sub(o[:, 0], rb, out=g[:, 0]).mul_(2.0 / m)
            p = torch.softmax(o[:, 1:], 1)
            p[torch.arange(m), cb] -= 1
            g[:, 1:] = p / m
            torch.mm(g.t(), a2, out=grads[4])
            torch.sum(g, 0, out=grads[5])
            g2 = g.mm(W3).mul_(z2 > 0)
            torch.mm(g2.t(), a1, out=grads[2])
            torch.sum(g2, 0, out=grads[3])
            g1 = g2.mm(W2).mul_(z1 > 0)
            torch.mm(g1.t(), xb, out=grads[0])
            torch.sum(g1, 0, out=grads[1])
            torch._foreach_add_(steps, 1)
            torch._fused_adamw_(params, grads, avg, sq, [], steps, lr=1e-3, beta1=0.9, beta2=0.999,
                                weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)

    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return (time.perf_counter() - start) / (epochs * -(-n // batch)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--autograd", action="store_true", help="polyhead without the scripted epoch")
    args = parser.parse_args()
    if args.autograd:
        from polyhead.nn import fast_epoch

        fast_epoch.ENABLED = False
    plain = plain_step()
    ours = polyhead_step(args.epochs)
    hand = hand_written_step(args.epochs)
    print(f"{'plain PyTorch DataLoader loop:':<31}{plain:.3f} ms/step")
    label = "polyhead (autograd):" if args.autograd else "polyhead (scripted epoch):"
    print(f"{label:<31}{ours:.3f} ms/step  ({plain / ours:.1f}x the plain loop)")
    print(f"{'hand-written in Python:':<31}{hand:.3f} ms/step  ({plain / hand:.1f}x the plain loop)")


if __name__ == "__main__":
    main()
