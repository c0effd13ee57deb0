"""Two models of different depths (depth up-scaled, pruned) compared by relative depth: layer i of A
against the layer of B at the same fraction of the way through the stack, with the mapping shown."""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.inspect.opening import opened
from fusion_gui.engine.naming import count_layers, layer_template
from fusion_gui.events import DepthMatch, Event, Progress


def relative_depth_mapping(layers_a: int, layers_b: int) -> tuple[int, ...]:
    """For each layer i of A, the layer of B at the same relative depth i / (layers_a - 1), rounded."""
    if layers_a == 1:
        return (0,)
    return tuple(int(round(i * (layers_b - 1) / (layers_a - 1))) for i in range(layers_a))


def _layer_tensors(reader) -> dict[int, dict[str, str]]:
    """layer -> {name template: tensor name} for the reader's weight tensors inside layers."""
    out: dict[int, dict[str, str]] = {}
    for name, info in reader.tensors.items():
        layer, template = layer_template(name)
        if layer is not None and info.dtype.is_floating_point:
            out.setdefault(layer, {})[template] = name
    return out


def depth_match(model_a: str, model_b: str, cancel: CancelToken | None = None,
                ) -> Generator[Event, None, DepthMatch]:
    """Cosine and relative difference ||B - A|| / ||A|| of each layer of A and its matched layer of B,
    over the tensors the two layers share by role and shape; one layer pair in memory at a time."""
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    with opened([model_a, model_b]) as (a, b):
        layers_a, layers_b = count_layers(a.tensors), count_layers(b.tensors)
        if not layers_a or not layers_b:
            raise InputError(f"'{a.label if not layers_a else b.label}' has no numbered layers to match by depth.")
        mapping = relative_depth_mapping(layers_a, layers_b)
        tensors_a, tensors_b = _layer_tensors(a), _layer_tensors(b)
        cosine, diff = np.full(layers_a, np.nan), np.full(layers_a, np.nan)
        for i, j in enumerate(mapping):
            cancel.raise_if_cancelled()
            dot = sq_a = sq_b = sq_d = 0.0
            for template, name_a in tensors_a.get(i, {}).items():
                name_b = tensors_b.get(j, {}).get(template)
                if name_b is None or tuple(a.tensors[name_a].shape) != tuple(b.tensors[name_b].shape):
                    continue
                x, y = a.get(name_a).double().reshape(-1), b.get(name_b).double().reshape(-1)
                dot += float(x @ y)
                sq_a += float(x @ x)
                sq_b += float(y @ y)
                sq_d += float((y - x).square().sum())
            if sq_a > 0 and sq_b > 0:
                cosine[i] = dot / np.sqrt(sq_a * sq_b)
                diff[i] = np.sqrt(sq_d / sq_a)
            yield Progress(i + 1, layers_a, i + 1, layers_a, time.perf_counter() - start, f"layer {i} ~ {j}")
        return DepthMatch(model_a=a.label, model_b=b.label, layers_a=layers_a, layers_b=layers_b,
                          mapping=mapping, cosine=cosine, relative_diff=diff, seconds=time.perf_counter() - start)
