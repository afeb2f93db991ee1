"""Per-kind training losses with a mask: unobserved labels add nothing.

Each loss returns the mean over the *observed* entries of its task (0 when a batch has none), as
a tensor, without synchronising with the host.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def mse(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean((raw.squeeze(-1) - target) ** 2, mask)


def huber(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean(F.huber_loss(raw.squeeze(-1), target, reduction="none"), mask)


def mae(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean((raw.squeeze(-1) - target).abs(), mask)


def binary_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean(
        F.binary_cross_entropy_with_logits(raw.squeeze(-1), target, reduction="none"), mask)


def multiclass_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean(F.cross_entropy(raw, target.clamp_min(0), reduction="none"), mask)


def multilabel_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_mean(F.binary_cross_entropy_with_logits(raw, target, reduction="none"), mask)


LOSS_FUNCTIONS: dict[tuple[str, str], LossFn] = {
    ("regression", "mse"): mse,
    ("regression", "huber"): huber,
    ("regression", "mae"): mae,
    ("binary", "log_loss"): binary_log_loss,
    ("multiclass", "log_loss"): multiclass_log_loss,
    ("multilabel", "log_loss"): multilabel_log_loss,
}


def activate(kind: str, raw: torch.Tensor) -> torch.Tensor:
    """The kind's output activation: identity, sigmoid or softmax."""
    if kind == "regression":
        return raw.squeeze(-1)
    if kind == "binary":
        return torch.sigmoid(raw.squeeze(-1))
    if kind == "multiclass":
        return torch.softmax(raw, dim=-1)
    return torch.sigmoid(raw)
