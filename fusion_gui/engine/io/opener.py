"""open_model: what a model reference is (a checkpoint, or a PEFT LoRA adapter over its base) and
the reader that format needs."""

from __future__ import annotations

from fusion_gui.engine.hub.remote_reader import RemoteReader, stand_in
from fusion_gui.engine.io.adapter import AdapterReader, is_adapter_folder
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.resolve import model_label, resolve_model_path


def open_model(ref: str) -> ModelReader | AdapterReader | RemoteReader:
    """Resolve `ref` (path or cached repo id) and read its headers; no tensor data is read."""
    remote = stand_in(str(ref))  # a Hub model not downloaded yet, in a dry run: planned from its headers
    if remote is not None:
        return remote
    path = resolve_model_path(ref)
    label = model_label(ref, path)
    if is_adapter_folder(path):  # a PEFT LoRA: base + B @ A
        return AdapterReader(str(ref), path, label)
    return ModelReader(str(ref), path, label)
