"""A PEFT LoRA adapter folder read as the model it makes: its base with W + scale * B @ A.

AdapterReader has ModelReader's interface. `tensors` lists the merged model's tensors (the base's,
with modules_to_save replacements), read from headers only; get(name) reads the base tensor and,
for a targeted module, the adapter's A and B, and adds the product, one tensor at a time.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.resolve import model_label, resolve_model_path
from fusion_gui.engine.io.weight_files import TensorInfo

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_PREFIX = "base_model.model."


def is_adapter_folder(path: Path) -> bool:
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def _pattern_value(patterns: dict, module: str, default):
    """peft's get_pattern_key: the first pattern that matches the end of the module name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass
class _Lora:
    a: str  # key of A in the adapter file
    b: str  # key of B
    scale: float
    embedding: bool
    bias: str | None = None  # lora_B.bias (lora_bias=True), added to the module's bias


class AdapterReader:
    """A LoRA adapter folder as a model: the base named in adapter_config.json plus the adapter."""

    def __init__(self, ref: str, path: Path, label: str):
        self.ref, self.path, self.label = ref, Path(path), label
        self.metadata: dict[str, str] = {}
        cfg_path = self.path / ADAPTER_CONFIG
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            if not isinstance(cfg, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise InputError(f"{ADAPTER_CONFIG} in {self.path} is not valid JSON ({e}).") from None
        self.adapter_config = cfg
        kind = str(cfg.get("peft_type", "LORA")).upper()
        if kind != "LORA":
            raise InputError(f"The adapter in {self.path} is a {kind} adapter; only LoRA adapters can "
                             f"be merged.")
        if cfg.get("use_dora"):
            raise InputError(f"The adapter in {self.path} uses DoRA, which fusion-gui cannot merge yet.")
        weights = next((self.path / n for n in ADAPTER_WEIGHTS if (self.path / n).is_file()), None)
        if weights is None:
            raise InputError(f"{self.path} has {ADAPTER_CONFIG} but no adapter_model.safetensors.")
        base_ref = cfg.get("base_model_name_or_path")
        if not base_ref:
            raise InputError(f"{ADAPTER_CONFIG} in {self.path} names no base model "
                             f"(base_model_name_or_path is empty).")
        local = self.path / str(base_ref)
        base_ref = str(local) if not Path(str(base_ref)).is_absolute() and local.exists() else str(base_ref)
        if Path(base_ref).expanduser().resolve() == self.path.resolve():
            raise InputError(f"The adapter in {self.path} names itself as its base model.")
        self.adapter = ModelReader(ref, weights, label)
        try:
            base_path = resolve_model_path(base_ref)
            if is_adapter_folder(base_path):
                raise InputError(f"The base of the adapter in {self.path} is itself an adapter.")
            self.base = ModelReader(base_ref, base_path, model_label(base_ref, base_path))
            self._index(cfg)
        except BaseException:
            self.close()
            raise
        self.config = self.base.config

    # -- building the map from the adapter's keys to the base's tensors ---------------------------

    def _base_name(self, name: str) -> str:
        """The base tensor a PEFT name (without 'base_model.model.') stands for."""
        names = self.base.tensors
        if name in names:
            return name
        parts = name.split(".")
        for i in range(1, len(parts) - 1):  # e.g. 'transformer.h.0...' in a file saved as 'h.0...'
            if ".".join(parts[i:]) in names:
                return ".".join(parts[i:])
        ends = [n for n in names if n.endswith("." + name)]  # e.g. a base saved with a prefix
        if len(ends) == 1:
            return ends[0]
        raise InputError(f"The adapter in {self.path} changes '{name}', which its base model "
                         f"'{self.base.label}' does not have.")

    def _index(self, cfg: dict) -> None:
        keys = self.adapter.tensors
        alpha, r0 = cfg.get("lora_alpha", 8), cfg.get("r", 8)
        rslora = bool(cfg.get("use_rslora"))
        self._fan_in_fan_out = bool(cfg.get("fan_in_fan_out"))
        self.loras: dict[str, _Lora] = {}
        self.replaced: dict[str, str] = {}  # base tensor name -> adapter key
        modules: dict[str, dict[str, str]] = {}
        for key in keys:
            name = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            for part, tag in ((".lora_A.weight", "A"), (".lora_B.weight", "B"), (".lora_B.bias", "bias"),
                              (".lora_embedding_A", "eA"), (".lora_embedding_B", "eB")):
                if name.endswith(part):
                    modules.setdefault(name[: -len(part)], {})[tag] = key
                    break
            else:
                if "lora_" in name or "trainable_tokens" in name or "magnitude" in name:
                    raise InputError(f"The adapter in {self.path} has tensor '{key}', which fusion-gui "
                                     f"does not know how to merge.")
                name = name.replace(".base_layer.", ".")  # saved embedding layers
                self.replaced[self._base_name(name)] = key
        for module, parts in modules.items():
            embedding = "eA" in parts or "eB" in parts
            a, b = (parts.get("eA"), parts.get("eB")) if embedding else (parts.get("A"), parts.get("B"))
            if a is None or b is None:
                raise InputError(f"The adapter in {self.path} has only half of the LoRA pair for "
                                 f"'{module}' (A and B are both needed).")
            ia, ib = keys[a], keys[b]
            if len(ia.shape) != 2 or len(ib.shape) != 2 or ia.shape[0] != ib.shape[1]:
                raise InputError(f"The adapter in {self.path} has LoRA matrices of shapes "
                                 f"{tuple(ia.shape)} and {tuple(ib.shape)} for '{module}', which do "
                                 f"not multiply (only Linear and Embedding LoRA are supported).")
            r = ia.shape[0]
            mod_alpha = _pattern_value(cfg.get("alpha_pattern"), module, alpha)
            _pattern_value(cfg.get("rank_pattern"), module, r0)  # the rank is A's shape
            scale = mod_alpha / math.sqrt(r) if rslora else mod_alpha / r
            target = self._base_name(module + ".weight")
            info = self.base.tensors[target]
            delta_shape = (ib.shape[0], ia.shape[1])  # B @ A
            if embedding:
                delta_shape = delta_shape[::-1]
            if tuple(info.shape) not in (delta_shape, delta_shape[::-1]):
                raise InputError(f"The adapter in {self.path} changes '{target}' by a "
                                 f"{delta_shape} update, but the base tensor is {tuple(info.shape)}.")
            bias = parts.get("bias")
            if bias is not None:
                bias_target = self._base_name(module + ".bias")
                self.loras[bias_target] = _Lora(a, b, scale, embedding, bias=bias)
            self.loras[target] = _Lora(a, b, scale, embedding)
        self.tensors: dict[str, TensorInfo] = {}
        for name, info in self.base.tensors.items():
            key = self.replaced.get(name)
            if key is not None:
                new = keys[key]
                info = replace(info, shape=new.shape, dtype=new.dtype, nbytes=new.nbytes)
            self.tensors[name] = info

    # -- ModelReader's interface -------------------------------------------------------------------

    @property
    def files(self) -> list[Path]:
        return self.adapter.files + self.base.files

    @property
    def num_shards(self) -> int:
        return self.base.num_shards

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for info in self.tensors.values())

    def get(self, name: str) -> torch.Tensor:
        """The merged tensor: the base's (or the adapter's replacement), plus the LoRA update."""
        if name not in self.tensors:
            raise InputError(f"Model '{self.label}' has no tensor '{name}'.")
        key = self.replaced.get(name)
        tensor = self.adapter.get(key) if key is not None else self.base.get(name)
        lora = self.loras.get(name)
        if lora is None:
            return tensor
        dtype = tensor.dtype
        if lora.bias is not None:
            delta = self.adapter.get(lora.bias).float() * lora.scale
        else:
            a, b = self.adapter.get(lora.a).float(), self.adapter.get(lora.b).float()
            delta = (b @ a) * lora.scale
            if lora.embedding or self._fan_in_fan_out:
                delta = delta.T  # embeddings, and GPT-2 Conv1D (fan_in_fan_out) store W as (in, out)
            if tuple(delta.shape) != tuple(tensor.shape):
                delta = delta.T
        return (tensor.float() + delta).to(dtype)

    def close(self) -> None:
        for reader in (getattr(self, "adapter", None), getattr(self, "base", None)):
            if reader is not None:
                reader.close()

    def __enter__(self) -> "AdapterReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdapterReader({self.label!r}, {len(self.loras)} LoRA tensors, base {self.base.label!r})"
