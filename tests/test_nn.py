"""The network pieces: losses with masks, weighting strategies, the lean optimiser."""

import pytest
import torch

from polyhead.nn.losses import LOSS_FUNCTIONS
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


@pytest.mark.parametrize("kind, loss", list(LOSS_FUNCTIONS))
def test_unmasked_fast_path_equals_all_true_mask(kind, loss):
    torch.manual_seed(0)
    fn = LOSS_FUNCTIONS[(kind, loss)]
    if kind == "multiclass":
        raw, target = torch.randn(8, 4), torch.randint(0, 4, (8,))
    elif kind == "multilabel":
        raw, target = torch.randn(8, 3), torch.randint(0, 2, (8, 3)).float()
    else:
        raw, target = torch.randn(8, 1), torch.rand(8)
    mask = torch.ones(target.shape, dtype=torch.bool)
    torch.testing.assert_close(fn(raw, target, None), fn(raw, target, mask))


def test_weighting_by_name_and_instance():
    assert isinstance(get_weighting("equal"), Equal)
    inst = Uncertainty(init_log_var=1.0)
    copy = get_weighting(inst)
    assert copy is not inst and copy.init_log_var == 1.0
    with pytest.raises(ValueError, match="unknown weighting 'magic'"):
        get_weighting("magic")
    w = get_weighting("uncertainty")
    w.setup(["regression", "multiclass"], [1.0, 2.0])
    losses = torch.tensor([0.5, 1.5])
    # log vars start at 0: 0.5 * L_reg + 1.0 * L_cls, each times its task weight
    torch.testing.assert_close(w(losses), torch.tensor(1.0 * 0.5 * 0.5 + 2.0 * 1.5))
