"""Per-tensor and per-layer metrics: how far each model moved from the base, and how the
changes agree. Layers and kinds come from the tensor names (engine/naming.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from fusion_gui.engine.naming import layer_of, tensor_kind
from fusion_gui.events import LayerMetrics, TensorMetrics


@dataclass
class _Sums:
    """Running sums from which relative norms and cosines are exact at any level."""

    base_sq: float = 0.0
    change_sq: np.ndarray | None = None
    result_sq: float = 0.0
    pair_dots: np.ndarray | None = None
    numel: int = 0
    conflict: float = 0.0
    kept: float = 0.0
    sign_numel: int = 0
    kept_numel: int = 0
    tensors: int = 0


# Tensors larger than this are measured on an evenly strided sample of about this many
# elements: relative norms and cosines then cost a fixed amount per tensor (their error is far
# below what a plot shows), while method statistics (sign conflicts, kept) stay exact.
METRIC_SAMPLE = 1 << 18


@torch.no_grad()
def measure_tensor(name: str, models: tuple[str, ...], inputs: list[torch.Tensor],
                   reference: torch.Tensor, result: torch.Tensor | None,
                   sign_conflict: float | None = None, kept_fraction: float | None = None,
                   count_sign_conflicts: bool = False) -> tuple[TensorMetrics, dict]:
    """Metrics of one tensor. `inputs` are the non-reference tensors aligned with `models`.

    Returns the event and the raw sums that LayerAccumulator aggregates. With
    count_sign_conflicts (the diff view), sign_conflict is measured here: the fraction of
    elements where some changes are positive and others negative.
    """
    numel = reference.numel()
    step = max(1, numel // METRIC_SAMPLE)
    scale = numel / max(1, -(-numel // step))  # sums over the sample, scaled to the whole tensor

    def sample(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1)[::step].float()

    ref = sample(reference)
    base_sq = float(ref.dot(ref)) * scale
    changes = [sample(x) - ref for x in inputs]
    change_sq = np.array([float(c.dot(c)) * scale for c in changes])
    if result is not None:
        moved = sample(result) - ref
        result_sq = float(moved.dot(moved)) * scale
    else:
        result_sq = 0.0
    pairs = [(i, j) for i in range(len(changes)) for j in range(i + 1, len(changes))]
    pair_dots = np.array([float(changes[i].dot(changes[j])) * scale for i, j in pairs])
    cosines = [d / np.sqrt(change_sq[i] * change_sq[j])
               for d, (i, j) in zip(pair_dots, pairs) if change_sq[i] * change_sq[j] > 0]
    if count_sign_conflicts and len(changes) > 1 and sign_conflict is None:
        signs = torch.stack([c.sign() for c in changes])
        conflict = (signs.amax(0) > 0) & (signs.amin(0) < 0)
        sign_conflict = float(conflict.float().mean())
    denom = np.sqrt(base_sq) if base_sq > 0 else 1.0
    event = TensorMetrics(
        name=name, layer=layer_of(name), kind=tensor_kind(name), numel=numel,
        models=models, input_change=np.sqrt(change_sq) / denom,
        result_change=float(np.sqrt(result_sq) / denom) if result is not None else float("nan"),
        cosine=float(np.mean(cosines)) if cosines else None,
        sign_conflict=sign_conflict, kept_fraction=kept_fraction,
    )
    sums = dict(base_sq=base_sq, change_sq=change_sq, result_sq=result_sq, pair_dots=pair_dots)
    return event, sums


@dataclass
class LayerAccumulator:
    """Aggregates tensor metrics into per-layer metrics, numel-weighted."""

    models: tuple[str, ...]
    has_result: bool = True
    _layers: dict = field(default_factory=dict)

    def add(self, event: TensorMetrics, sums: dict) -> None:
        acc = self._layers.setdefault(event.layer, _Sums())
        acc.base_sq += sums["base_sq"]
        acc.change_sq = sums["change_sq"] if acc.change_sq is None else acc.change_sq + sums["change_sq"]
        acc.result_sq += sums["result_sq"]
        acc.pair_dots = sums["pair_dots"] if acc.pair_dots is None else acc.pair_dots + sums["pair_dots"]
        acc.numel += event.numel
        acc.tensors += 1
        if event.sign_conflict is not None:
            acc.conflict += event.sign_conflict * event.numel
            acc.sign_numel += event.numel
        if event.kept_fraction is not None:
            acc.kept += event.kept_fraction * event.numel
            acc.kept_numel += event.numel

    def layer(self, layer: int | None) -> LayerMetrics:
        acc = self._layers[layer]
        denom = np.sqrt(acc.base_sq) if acc.base_sq > 0 else 1.0
        change = acc.change_sq if acc.change_sq is not None else np.zeros(len(self.models))
        return LayerMetrics(
            layer=layer, models=self.models, input_change=np.sqrt(change) / denom,
            result_change=float(np.sqrt(acc.result_sq) / denom) if self.has_result else float("nan"),
            cosine=self._cosine(acc, change),
            sign_conflict=acc.conflict / acc.sign_numel if acc.sign_numel else None,
            kept_fraction=acc.kept / acc.kept_numel if acc.kept_numel else None,
            tensors=acc.tensors,
        )

    def _cosine(self, acc: _Sums, change_sq: np.ndarray) -> float | None:
        """Mean over model pairs of the cosine between their whole-layer changes."""
        n = len(change_sq)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        values = [d / np.sqrt(change_sq[i] * change_sq[j])
                  for d, (i, j) in zip(acc.pair_dots if acc.pair_dots is not None else [], pairs)
                  if change_sq[i] * change_sq[j] > 0]
        return float(np.mean(values)) if values else None

    def all_layers(self) -> list[LayerMetrics]:
        keys = sorted((k for k in self._layers if k is not None))
        if None in self._layers:
            keys.append(None)
        return [self.layer(k) for k in keys]
