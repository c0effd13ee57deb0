"""Spectral health per layer: the power-law exponent alpha of each weight matrix's eigenvalue spectrum
(the eigenvalues of W^T W, i.e. squared singular values), fitted as WeightWatcher 0.7 does by default:
for every candidate xmin the continuous power-law MLE alpha = 1 + n / sum(log(x / xmin)) over the tail
x >= xmin, keeping the xmin whose fit has the smallest Kolmogorov-Smirnov distance to the tail.
Eigenvalues below 1e-5 are dropped first, as WeightWatcher does.

Alpha between about 2 and 6 is what WeightWatcher calls well trained; above 6, under-trained or random;
below 2, over-fitted. Streamed one matrix at a time: one model's tensor in memory, its SVD, its fit.
(Why not call weightwatcher itself: see DEVELOPERS.md, "Spectral health".)
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.inspect.opening import opened
from fusion_gui.engine.naming import layer_of, tensor_kind
from fusion_gui.events import Event, Progress

EVALS_THRESH = 1e-5  # WeightWatcher's: eigenvalues at or below this are left out of the fit
MIN_EVALS = 20  # below this WeightWatcher switches to a small-sample fit; we report no alpha
MAX_SIDE = 16384  # matrices with a larger smaller side are skipped (full SVD too slow for a view)


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    xmin: float
    ks_distance: float  # Kolmogorov-Smirnov distance of the fitted tail
    tail: int  # eigenvalues >= xmin


@dataclass(frozen=True)
class SpectralTensor:
    """One model's alpha for one weight matrix (an event: the view draws it as it comes)."""

    model: str
    name: str
    layer: int | None
    kind: str  # a coarse role (naming.KINDS)
    shape: tuple[int, ...]
    alpha: float  # NaN: no fit (too few eigenvalues, or too big)
    ks_distance: float
    evals: int
    note: str = ""


@dataclass(frozen=True)
class SpectralResult:
    models: tuple[str, ...]
    tensors: tuple[SpectralTensor, ...]
    seconds: float = 0.0

    def layer_alphas(self, model: str) -> dict[int, float]:
        """Mean alpha over the model's fitted matrices of each numbered layer."""
        sums: dict[int, list[float]] = {}
        for t in self.tensors:
            if t.model == model and t.layer is not None and math.isfinite(t.alpha):
                sums.setdefault(t.layer, []).append(t.alpha)
        return {layer: float(np.mean(v)) for layer, v in sorted(sums.items())}


def fit_power_law(evals: np.ndarray) -> PowerLawFit | None:
    """WeightWatcher's default fit (WWFit, standard branch) of eigenvalues; None below MIN_EVALS."""
    data = np.sort(np.asarray(evals, dtype=np.float64))
    data = data[data > EVALS_THRESH]
    n_all = len(data)
    if n_all < MIN_EVALS:
        return None
    logs = np.log(data)
    tail_log_sums = np.cumsum(logs[::-1])[::-1]  # sum of log x over x[i:]
    best = None
    for i in range(n_all - 1):
        n = n_all - i
        denominator = tail_log_sums[i] - n * logs[i]
        alpha = 1 + n / denominator if denominator > 0 else math.inf
        if not alpha > 1 or not math.isfinite(alpha):
            continue  # WeightWatcher leaves D at 1 for such candidates: never the best
        theory = 1 - (data[i:] / data[i]) ** (1 - alpha)
        distance = float(np.max(np.abs(theory - np.arange(n) / n)))
        if best is None or distance < best.ks_distance:
            best = PowerLawFit(float(alpha), float(data[i]), distance, n)
    return best


def eigenvalues(weight: torch.Tensor) -> np.ndarray:
    """Eigenvalues of W^T W for a 2-D weight (squared singular values), in float64."""
    return torch.linalg.svdvals(weight.float()).double().square().numpy()


def _weight_matrices(reader) -> list[str]:
    """2-D floating-point tensors: the weight matrices (embeddings and heads included, as WeightWatcher)."""
    return [n for n, info in reader.tensors.items()
            if info.dtype.is_floating_point and len(info.shape) == 2 and min(info.shape) > 1]


def spectral(models: list[str], tensors: list[str] | None = None, cancel: CancelToken | None = None,
             ) -> Generator[Event | SpectralTensor, None, SpectralResult]:
    """Alpha of every weight matrix of each model (or of `tensors` only), a SpectralTensor per fit."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    if not models:
        raise InputError("Spectral health needs at least one model.")
    out: list[SpectralTensor] = []
    with opened(list(models)) as readers:
        plan = []
        for r in readers:
            names = _weight_matrices(r) if tensors is None else [n for n in tensors if n in r.tensors]
            if not names:
                raise InputError(f"'{r.label}' has no weight matrix to fit.")
            plan += [(r, n) for n in sorted(names, key=lambda n: (layer_of(n) is None, layer_of(n) or 0, n))]
        total = sum(r.tensors[n].nbytes for r, n in plan)
        done = 0
        for i, (r, name) in enumerate(plan):
            cancel.raise_if_cancelled()
            layer = layer_of(name)
            shape = tuple(r.tensors[name].shape)
            if min(shape) > MAX_SIDE:
                fit, evals, note = None, 0, f"skipped: more than {MAX_SIDE} singular values"
            else:
                values = eigenvalues(r.get(name))
                fit, evals = fit_power_law(values), int((values > EVALS_THRESH).sum())
                note = "" if fit is not None else f"fewer than {MIN_EVALS} eigenvalues"
            item = SpectralTensor(model=r.label, name=name, layer=layer, kind=tensor_kind(name), shape=shape,
                                  alpha=fit.alpha if fit else math.nan,
                                  ks_distance=fit.ks_distance if fit else math.nan, evals=evals, note=note)
            out.append(item)
            done += r.tensors[name].nbytes
            yield item
            yield Progress(i + 1, len(plan), done, total, time.perf_counter() - start, f"{name} of {r.label}")
        return SpectralResult(models=tuple(r.label for r in readers), tensors=tuple(out),
                              seconds=time.perf_counter() - start)
