"""Compare models without merging: per-tensor and per-layer change, cosine and sign conflicts.

With a base, each model's change from the base is measured and the changes are compared with
each other; without one, model B is measured against model A. Nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor

import torch

from fusion_gui.engine.inspect.analysis import LayerAccumulator, measure_tensor
from fusion_gui.engine.naming import layer_of
from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge.plan import pick_device
from fusion_gui.events import DiffResult, Event, Log, Progress, TensorMetrics


def _order(names: list[str]) -> list[str]:
    """Layers in order, then everything outside the layers; file order within each."""
    return sorted(names, key=lambda n: (layer_of(n) is None, layer_of(n) or 0))


def _comparable(readers: list[ModelReader]) -> tuple[list[str], list[str]]:
    """Tensor names every model has (checked for equal shapes) and a note on the rest."""
    first = readers[0]
    common = [n for n in first.tensors if all(n in r.tensors for r in readers[1:])]
    if not common:
        raise InputError(f"'{readers[0].label}' and '{readers[1].label}' share no tensor names; "
                         "they are not the same architecture.")
    notes = []
    for r in readers:
        extra = len(r.tensors) - len(common)
        if extra:
            notes.append(f"'{r.label}' has {extra} tensors the others lack; they are not compared.")
    for name in common:
        shapes = [r.tensors[name].shape for r in readers]
        if len(set(shapes)) > 1:
            listed = ", ".join(f"'{r.label}' has {list(s)}" for r, s in zip(readers, shapes))
            raise InputError(f"Shape mismatch for tensor '{name}': {listed}.")
    return [n for n in common if first.tensors[n].dtype.is_floating_point], notes


def diff(model_a: str, model_b: str, base: str | None = None, device: str = "cpu",
         cancel: CancelToken | None = None) -> Generator[Event, None, DiffResult]:
    cancel = cancel or CancelToken()
    start = time.perf_counter()
    dev = pick_device(device)
    readers: list[ModelReader] = []
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusion-diff-read")
    try:
        for ref in ([base] if base else []) + [model_a, model_b]:
            readers.append(open_model(ref))
        names, notes = _comparable(readers)
        for note in notes:
            yield Log(note, "warning")
        names = _order(names)
        labels = tuple(r.label for r in readers[1:])  # measured against readers[0]
        accumulator = LayerAccumulator(labels, has_result=False)
        per_layer: dict[int | None, int] = {}
        for n in names:
            per_layer[layer_of(n)] = per_layer.get(layer_of(n), 0) + 1
        total_bytes = sum(readers[0].tensors[n].nbytes for n in names)

        def load(name: str) -> list[torch.Tensor]:
            return [r.get(name).to(device=dev, dtype=torch.float32) for r in readers]

        futures = [pool.submit(load, n) for n in names[:2]]
        events: list[TensorMetrics] = []
        done_bytes, seen = 0, {}
        for i, name in enumerate(names):
            cancel.raise_if_cancelled()
            tensors = futures.pop(0).result()
            if i + 2 < len(names):
                futures.append(pool.submit(load, names[i + 2]))
            event, sums = measure_tensor(name, labels, tensors[1:], tensors[0], None,
                                         count_sign_conflicts=True)
            del tensors
            events.append(event)
            accumulator.add(event, sums)
            yield event
            seen[event.layer] = seen.get(event.layer, 0) + 1
            if seen[event.layer] == per_layer[event.layer]:
                yield accumulator.layer(event.layer)
            done_bytes += readers[0].tensors[name].nbytes
            yield Progress(i + 1, len(names), done_bytes, total_bytes, time.perf_counter() - start, name)
        return DiffResult(models=tuple(r.label for r in readers[-2:]),
                          base_model=readers[0].label if base else None, tensors=tuple(events),
                          layers=tuple(accumulator.all_layers()), seconds=time.perf_counter() - start)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for r in readers:
            r.close()
