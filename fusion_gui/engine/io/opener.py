"""open_model: what a model reference is (a checkpoint, or a PEFT LoRA adapter over its base) and
the reader that format needs."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from fusion_gui.engine.io.adapter import AdapterReader, is_adapter_folder
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.resolve import model_label, resolve_model_path


# Readers standing in for references inside a `stand_ins` block: a Hub model not downloaded yet, planned
# from its headers in a dry run (engine/hub/remote_reader.py)
_STAND_INS: ContextVar[dict | None] = ContextVar("stand_ins", default=None)


@contextmanager
def stand_ins(readers: dict):
    """Inside the block, open_model returns readers[ref] for these references."""
    token = _STAND_INS.set({**(_STAND_INS.get() or {}), **readers})
    try:
        yield
    finally:
        _STAND_INS.reset(token)


def open_model(ref: str) -> ModelReader | AdapterReader:
    """Resolve `ref` (path or cached repo id) and read its headers; no tensor data is read."""
    remote = (_STAND_INS.get() or {}).get(str(ref))
    if remote is not None:
        return remote
    path = resolve_model_path(ref)
    label = model_label(ref, path)
    if is_adapter_folder(path):  # a PEFT LoRA: base + B @ A
        return AdapterReader(str(ref), path, label)
    return ModelReader(str(ref), path, label)
