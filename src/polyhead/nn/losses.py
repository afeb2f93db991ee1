"""Per-kind training losses with a mask: unobserved labels add nothing.

Each loss returns the mean over the *observed* entries of its task (0 when a batch has none), as
a tensor, without synchronising with the host. A mask of None means every label is present.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:  # every label present
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def mse(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:  # one fused op on the common path
        return F.mse_loss(raw.squeeze(-1), target)
    return _masked_mean((raw.squeeze(-1) - target) ** 2, mask)


def huber(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return _masked_mean(F.huber_loss(raw.squeeze(-1), target, reduction="none"), mask)


def mae(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return _masked_mean((raw.squeeze(-1) - target).abs(), mask)


def binary_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return F.binary_cross_entropy_with_logits(raw.squeeze(-1), target)
    return _masked_mean(
        F.binary_cross_entropy_with_logits(raw.squeeze(-1), target, reduction="none"), mask)


def multiclass_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None and raw.dim() == 2:  # one fused op on the common path
        return F.cross_entropy(raw, target)
    # flattened so packed ensembles' (K, n, C) outputs read as K*n rows of C classes
    flat = F.cross_entropy(raw.reshape(-1, raw.shape[-1]), target.reshape(-1).clamp_min(0),
                           reduction="none")
    return _masked_mean(flat, None if mask is None else mask.reshape(-1))


def multilabel_log_loss(raw: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
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
