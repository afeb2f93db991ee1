"""The network pieces: losses with masks, weighting strategies, the lean optimiser."""

import pytest
import torch

from polyhead.nn.optim import LeanAdamW
from polyhead.nn.weighting import Equal, Uncertainty, get_weighting


def test_lean_adamw_matches_torch_adamw_bit_for_bit():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())

    def groups(m):
        return [{"params": [m.weight], "weight_decay": 0.01}, {"params": [m.bias], "weight_decay": 0.0}]

    stock = torch.optim.AdamW(groups(a), lr=1e-2, fused=True)
    lean = LeanAdamW(groups(b), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(lean, step_size=10, gamma=0.5)
    sched_stock = torch.optim.lr_scheduler.StepLR(stock, step_size=10, gamma=0.5)
    x = torch.randn(16, 5)
    for _ in range(40):
        for model, opt, s in ((a, stock, sched_stock), (b, lean, sched)):
            opt.zero_grad()
            (model(x) ** 2).mean().backward()
            opt.step()
            s.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_lean_adamw_falls_back_when_a_gradient_is_missing():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = LeanAdamW([p, q], lr=0.1)
    (p.sum()).backward()                      # q gets no gradient
    opt.step()
    assert not torch.equal(p, torch.ones(2)) and torch.equal(q, torch.ones(2))


def _kind(kind, loss=None):
    import numpy as np
    import pandas as pd

    from polyhead.tasks import Task, fit_task, resolve_tasks

    rng = np.random.default_rng(0)
    y = pd.DataFrame({"c": rng.integers(0, 4, 40), "a": rng.integers(0, 2, 40),
                      "b": rng.integers(0, 2, 40)})
    options = {"quantile": {"quantiles": (0.1, 0.5, 0.9)}, "multilabel": {"columns": ("a", "b")}}
    task = Task("t", kind=kind, column=None if kind == "multilabel" else "c", loss=loss,
                **options.get(kind, {}))
    return fit_task(resolve_tasks([task], y)[0], y), y


KIND_LOSSES = [("regression", "mse"), ("regression", "huber"), ("regression", "mae"),
               ("binary", None), ("multiclass", None), ("multilabel", None), ("ordinal", None),
               ("count", "poisson"), ("count", "negative_binomial"), ("quantile", None)]


@pytest.mark.parametrize("kind, loss", KIND_LOSSES)
def test_unweighted_fast_path_equals_all_ones_weights(kind, loss):
    state, y = _kind(kind, loss) if kind != "binary" else _binary()
    values, _ = state.encode(y)
    torch.manual_seed(0)
    raw = torch.randn(len(values), state.head_width)
    target = torch.from_numpy(values)
    ones = torch.ones(target.shape)
    torch.testing.assert_close(state.loss(raw, target, None), state.loss(raw, target, ones))
    # a missing label (weight 0) adds nothing: the loss equals that of the other rows alone
    half = ones.clone()
    half[: len(half) // 2] = 0
    rest = state.loss(raw[len(half) // 2:], target[len(half) // 2:], None)
    torch.testing.assert_close(state.loss(raw, target, half), rest)


def _binary():
    import numpy as np
    import pandas as pd

    from polyhead.tasks import Task, fit_task

    y = pd.DataFrame({"c": np.tile([0, 1], 20)})
    return fit_task(Task("t", kind="binary", column="c", loss="log_loss"), y), y


def test_weighting_by_name_and_instance():
    assert isinstance(get_weighting("equal"), Equal)
    inst = Uncertainty(init_log_var=1.0)
    copy = get_weighting(inst)
    assert copy is not inst and copy.init_log_var == 1.0
    with pytest.raises(ValueError, match="unknown weighting 'magic'"):
        get_weighting("magic")
    from types import SimpleNamespace

    w = get_weighting("uncertainty")
    w.setup([SimpleNamespace(uncertainty_factor=0.5), SimpleNamespace(uncertainty_factor=1.0)],
            [1.0, 2.0])
    losses = torch.tensor([0.5, 1.5])
    # log vars start at 0: 0.5 * L_reg + 1.0 * L_cls, each times its task weight
    torch.testing.assert_close(w(losses), torch.tensor(1.0 * 0.5 * 0.5 + 2.0 * 1.5))
