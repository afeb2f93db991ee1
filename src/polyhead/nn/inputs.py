"""The network's input block: from the encoded feature matrix to the trunk's input.

The feature encoder (:mod:`polyhead.features`) gives one float32 matrix whose columns have roles
("numeric", "indicator", "onehot", "code"). This block, shared by every ensemble member:

* embeds the chosen numeric columns, each with its own small network (Gorishniy, Rubachev and
  Babenko, "On Embeddings for Numerical Features in Tabular Deep Learning", 2022):

  - ``"ple"``: piecewise-linear encoding on quantile bins fitted once on the training rows
    (a value's position within each bin, 0 below, 1 above; a value many rows share is an edge
    of its own, :func:`column_edges`), then a linear map and ReLU;
  - ``"periodic"``: ``cos`` and ``sin`` of learnt frequencies times the value, then a linear
    map and ReLU;

* looks up a learnt vector for each "code" column (a high-cardinality categorical);
* passes every other column through as it is (one-hot, missing indicators, numeric columns
  that are not embedded, such as 0/1 flags).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

#: ``n_bins="auto"``: at least this many bins, one more per ROWS_PER_BIN training rows beyond
#: MIN_BINS * ROWS_PER_BIN, at most MAX_BINS (chosen on benchmarks/quality.py, see auto_bins)
MIN_BINS, MAX_BINS, ROWS_PER_BIN = 8, 64, 400


def auto_bins(n_rows: int) -> int:
    """Quantile bins for ``n_rows`` training rows: 8 up to 3,200 rows, then one more per 400
    rows, at most 64 (from 25,600 rows).

    More bins resolve more of a column's shape (an edge at each of a few dozen distinct
    values: age, years of education, round amounts) but each bin's slope is learnt from fewer
    rows. On the 18 sets of ``benchmarks/quality.py`` under 10k rows, 16, 32 or 64 bins give
    0.894-0.896 of per-target LightGBM's error against 0.878 with 8 (worse on enb, atp7d,
    scpf, flags, scene); on adult (30k training rows) the error falls with every step, 0.4297
    with 8, 0.4225 with 32, 0.4221 with 48, 0.4213 with 64 (LightGBM 0.4214); on bike sharing
    (13k rows) 32 bins lose to 8 (``benchmarks/kinds.py``: regression deviance 4.65 / 7.19
    against 4.07 / 6.99). So where this grows the count, the embedding choice probes 8
    bins and this count, and keeps more only where they win on the validation split.
    """
    return int(min(MAX_BINS, max(MIN_BINS, n_rows // ROWS_PER_BIN)))


def quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """``(n_features, n_bins + 1)`` bin edges from each column's quantiles
    (:func:`column_edges`). A column with fewer edges gets its remaining ones past its last
    (empty bins, encoded 0)."""
    edges = np.zeros((values.shape[1], n_bins + 1), dtype=np.float32)
    for j in range(values.shape[1]):
        q = column_edges(values[:, j], n_bins)
        edges[j, : len(q)] = q
        edges[j, len(q):] = np.inf  # padding: empty bins beyond the last edge
    return edges


def column_edges(column: np.ndarray, n_bins: int) -> np.ndarray:
    """At most ``n_bins + 1`` increasing float32 edges for one column's (finite) values.

    A column with at most ``n_bins + 1`` distinct values gets an edge at each. Otherwise a
    value held by at least ``1 / n_bins`` of the rows (a mass point: the zeros of a
    zero-inflated amount, the mode of a small count) is an edge of its own, as are the
    smallest and largest values, and the remaining edges are the quantiles of the other rows.
    Plain quantiles would put several edges on a mass point and leave the values beside it
    unresolved: adult's capital gain is 0 in 92% of the rows, so its quantile edges on 8 bins
    were 0 and the maximum alone, and all of its signal, a threshold near 7,000, sat inside one
    bin. Without mass points the edges are the plain quantiles.
    """
    column = np.asarray(column, dtype=np.float32)
    distinct, counts = np.unique(column, return_counts=True)
    if len(distinct) < 2:
        return np.asarray([distinct[0], distinct[0] + 1.0], dtype=np.float32)
    if len(distinct) <= n_bins + 1:
        return distinct
    heavy = counts * n_bins >= len(column)
    fixed = np.unique(np.concatenate([distinct[[0, -1]], distinct[heavy]]))
    rest = np.isin(column, distinct[heavy], invert=True)
    inner = max(n_bins + 1 - len(fixed), 0)
    if inner and rest.any():
        levels = np.linspace(0, 1, inner + 2)[1:-1]
        fixed = np.unique(np.concatenate([fixed, np.quantile(column[rest], levels).astype(np.float32)]))
    return fixed.astype(np.float32)


class PiecewiseLinear(nn.Module):
    """Piecewise-linear encoding then a per-feature linear map and ReLU: ``(..., F)`` ->
    ``(..., F * d_embedding)``."""

    edges: torch.Tensor

    def __init__(self, edges: torch.Tensor, d_embedding: int) -> None:
        super().__init__()
        n_features, n_edges = edges.shape
        self.register_buffer("edges", edges.clone())
        self.weight = nn.Parameter(torch.empty(n_features, n_edges - 1, d_embedding))
        self.bias = nn.Parameter(torch.empty(n_features, d_embedding))
        bound = 1 / math.sqrt(n_edges - 1)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def constants(self) -> list[torch.Tensor]:
        """The encoding's constants from the edges, ``(features, bins)`` each: each bin's
        origin and width, the clamp's lower and upper bounds (the first bin open below, each
        feature's last real bin open above) and which bins are real (the scripted epoch of
        :mod:`polyhead.nn.fast_epoch` encodes with them too)."""
        edges = self.edges
        left, right = edges[:, :-1], edges[:, 1:]
        finite = torch.isfinite(right)
        width = torch.where(finite, right - left, torch.ones_like(left)).clamp_min(1e-12)
        origin = torch.where(torch.isfinite(left), left, torch.zeros_like(left))
        last = finite.sum(-1, keepdim=True) - 1  # each feature's last real bin
        index = torch.arange(left.shape[1], device=edges.device)
        # tensors of the input's dtype, not Python scalars (an exported graph keeps them float32)
        lower = torch.where(index == 0, torch.full_like(left, -math.inf), torch.zeros_like(left))
        upper = torch.where(index == last, torch.full_like(left, math.inf), torch.ones_like(left))
        return [origin, width, lower, upper, finite]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        origin, width, lower, upper, finite = self.constants()
        t = (x.unsqueeze(-1) - origin) / width
        t = torch.maximum(torch.minimum(t, upper), lower)
        return torch.where(finite, t, torch.zeros_like(t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.einsum("...ft,ftd->...fd", self.encode(x), self.weight) + self.bias
        return torch.relu(z).flatten(-2)


class Periodic(nn.Module):
    """``[cos(2 pi c x), sin(2 pi c x)]`` with learnt frequencies ``c``, then a per-feature
    linear map and ReLU: ``(..., F)`` -> ``(..., F * d_embedding)``."""

    def __init__(self, n_features: int, d_embedding: int, n_frequencies: int = 16,
                 scale: float = 0.1) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, n_frequencies) * scale)
        self.weight = nn.Parameter(torch.empty(n_features, 2 * n_frequencies, d_embedding))
        self.bias = nn.Parameter(torch.empty(n_features, d_embedding))
        bound = 1 / math.sqrt(2 * n_frequencies)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 2 * math.pi * self.frequencies * x.unsqueeze(-1)
        z = torch.einsum("...ft,ftd->...fd", torch.cat([torch.cos(v), torch.sin(v)], -1), self.weight)
        return torch.relu(z + self.bias).flatten(-2)


class InputBlock(nn.Module):
    """The encoded matrix ``(..., n_inputs)`` as the trunk's input ``(..., out_features)``.

    Parameters
    ----------
    n_inputs : int
        Width of the encoded matrix.
    embedded : sequence of int
        Columns given numeric embeddings (empty: none).
    codes : sequence of int
        Columns holding category codes, with ``cardinalities`` and ``d_category`` each.
    numeric_embedding : {"ple", "periodic", None}
    edges : tensor, optional
        PLE bin edges, ``(len(embedded), n_bins + 1)``.
    """

    passthrough: torch.Tensor
    embedded_index: torch.Tensor
    code_index: torch.Tensor
    out_features: int

    def __init__(self, n_inputs: int, embedded: Sequence[int] = (), codes: Sequence[int] = (),
                 cardinalities: Sequence[int] = (), numeric_embedding: str | None = None,
                 edges: torch.Tensor | None = None, n_bins: int = 32, d_embedding: int = 16,
                 d_category: int = 16) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        self.embedded = list(embedded) if numeric_embedding else []
        self.codes = list(codes)
        special = set(self.embedded) | set(self.codes)
        # derived from the constructor's arguments: not saved with the weights
        self.register_buffer("passthrough", torch.tensor([i for i in range(n_inputs) if i not in special],
                                                         dtype=torch.long), persistent=False)
        self.register_buffer("embedded_index", torch.tensor(self.embedded, dtype=torch.long),
                             persistent=False)
        self.register_buffer("code_index", torch.tensor(self.codes, dtype=torch.long), persistent=False)
        self.numeric: nn.Module | None = None
        if self.embedded:
            if numeric_embedding == "ple":
                if edges is None:  # shapes only (loading): the buffer comes from the file
                    edges = torch.zeros(len(self.embedded), n_bins + 1)
                self.numeric = PiecewiseLinear(edges, d_embedding)
            elif numeric_embedding == "periodic":
                self.numeric = Periodic(len(self.embedded), d_embedding)
            else:
                raise ValueError(f"unknown numeric_embedding {numeric_embedding!r}")
        self.categories = nn.ModuleList(nn.Embedding(int(c), d_category) for c in cardinalities)
        self.identity = not self.embedded and not self.codes
        self.out_features = (len(self.passthrough) + len(self.embedded) * d_embedding
                             + len(self.codes) * d_category)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        parts = [x.index_select(-1, self.passthrough)]
        if self.numeric is not None:
            parts.append(self.numeric(x.index_select(-1, self.embedded_index)))
        if self.codes:
            codes = x.index_select(-1, self.code_index).long()
            parts += [table(codes[..., j]) for j, table in enumerate(self.categories)]
        return torch.cat(parts, dim=-1)
