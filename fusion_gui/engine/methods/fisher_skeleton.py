"""The model side of the layer-streamed Fisher estimate (fisher_stream.py): a causal LM as a
skeleton whose parameters sit on the meta device, with checkpoint tensors read into one part at a
time, and stand-ins for its decoder layer stack that record how the layers are called or inject a
prepared hidden state.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch
from torch import nn

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader


def model_config(reader: ModelReader):
    """The transformers config of a model folder; an InputError when it has none."""
    from transformers import AutoConfig

    cfg = reader.config
    if not cfg or "model_type" not in cfg:
        raise InputError(f"The fisher method needs Hugging Face model folders with a config.json; "
                         f"'{reader.label}' has none.")
    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(cfg["model_type"], **kwargs)
    except (ValueError, KeyError) as err:
        raise InputError(f"transformers does not know the model type '{cfg['model_type']}' of "
                         f"'{reader.label}' ({err}).") from None


class Stop(Exception):
    """Raised by a layer stand-in to end the model's forward once it has what it needs."""


class Capture:
    def __init__(self) -> None:
        self.calls: dict[int, tuple[tuple, dict, bool]] = {}  # layer -> (args, kwargs, hidden by keyword)
        self.hidden: torch.Tensor | None = None  # layer 0's input
        self.stop_at = 0


class Recorder(nn.Module):
    """Stands in for decoder layer `index`: records how the model calls it, passes the hidden
    state through, and stops the forward at `capture.stop_at`."""

    def __init__(self, layer: nn.Module, index: int, capture: Capture):
        super().__init__()
        object.__setattr__(self, "_layer", layer)  # not a submodule: its parameters stay out of sight
        self.index, self.capture = index, capture

    def __getattr__(self, name):  # model code reads layer attributes such as attention_type
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_layer"), name)

    def forward(self, *args, **kwargs):
        by_keyword = not args
        hidden = kwargs.pop("hidden_states") if by_keyword else args[0]
        if self.index not in self.capture.calls:
            self.capture.calls[self.index] = (tuple(args[1:]), dict(kwargs), by_keyword)
        if self.index == 0:
            self.capture.hidden = hidden
        if self.index >= self.capture.stop_at:
            raise Stop
        return hidden


class Inject(nn.Module):
    """Stands in for the whole layer stack: returns a prepared last hidden state."""

    def __init__(self, hidden: torch.Tensor, as_tuple: bool):
        super().__init__()
        self.hidden, self.as_tuple = hidden, as_tuple

    def forward(self, *args, **kwargs):
        return (self.hidden,) if self.as_tuple else self.hidden


def _find_layers(model: nn.Module) -> tuple[str, nn.Module, str, nn.ModuleList]:
    """The decoder layer stack: the ModuleList of same-class blocks holding the most parameters."""
    best, best_size = None, -1
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) and len({type(m) for m in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (path, module), size
    if best is None or not best[0]:
        raise InputError(f"The fisher method cannot find the decoder layers of a {type(model).__name__}.")
    path, layers = best
    parent_path, _, attr = path.rpartition(".")
    return path, model.get_submodule(parent_path), attr, layers


class Skeleton:
    """A causal LM whose parameters sit on the meta device; checkpoint tensors go in and out."""

    def __init__(self, reader: ModelReader, device: torch.device):
        from accelerate import init_empty_weights
        from transformers import AutoModelForCausalLM

        config = model_config(reader)
        config.use_cache = False
        try:
            with init_empty_weights(include_buffers=False):  # buffers (rotary frequencies) stay real
                try:
                    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
                except TypeError:  # transformers 4 calls it torch_dtype
                    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
        except ValueError as err:
            raise InputError(f"The fisher method needs causal language models; transformers cannot load "
                             f"'{reader.label}' as one ({err}).") from None
        model.tie_weights()  # meta construction leaves tied weights untied
        model.eval()
        for module in model.modules():
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = buffer.to(device)
        self.model, self.reader, self.device = model, reader, device
        self.layers_path, self._parent, self._attr, self.layers = _find_layers(model)
        self.meta = dict(model.named_parameters())  # canonical name -> meta parameter (tied ones once)
        canonical = {id(p): name for name, p in self.meta.items()}
        self._where: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in self.meta}
        aliases: dict[str, list[str]] = {n: [] for n in self.meta}
        for mod_name, module in model.named_modules(remove_duplicate=False):
            for attr, param in module._parameters.items():
                if param is not None:
                    name = canonical[id(param)]
                    self._where[name].append((module, attr))
                    aliases[name].append(f"{mod_name}.{attr}" if mod_name else attr)
        self.checkpoint_names = {n: self._in_checkpoint(n, aliases[n], model.base_model_prefix) for n in self.meta}
        inner = f"{self.layers_path}."
        self.layer_names = [[n for n in self.meta if n.startswith(f"{inner}{i}.")] for i in range(len(self.layers))]
        self.outside = [n for n in self.meta if not n.startswith(inner)]
        embed = {canonical[id(p)] for p in model.get_input_embeddings().parameters()}
        head_module = model.get_output_embeddings()
        head = {canonical[id(p)] for p in head_module.parameters()} if head_module is not None else set()
        self.embed_weight = canonical[id(model.get_input_embeddings().weight)]
        self.before_layers = [n for n in self.outside if n not in head - embed]  # everything but an untied head
        self.after_layers = [n for n in self.outside if n not in embed - head]  # everything but an untied embedding

    def _in_checkpoint(self, name: str, aliases: list[str], prefix: str) -> list[str]:
        found = []
        for alias in aliases:
            stripped = alias[len(prefix) + 1:] if prefix and alias.startswith(prefix + ".") else None
            for candidate in (alias, stripped, f"{prefix}.{alias}" if prefix else None):
                if candidate and candidate in self.reader.tensors and candidate not in found:
                    found.append(candidate)
        if not found:
            raise InputError(f"Model '{self.reader.label}' has no tensor '{name}', which its architecture "
                             f"needs, so its Fisher cannot be estimated.")
        shape = tuple(self.meta[name].shape)
        for candidate in found:
            if tuple(self.reader.tensors[candidate].shape) != shape:
                raise InputError(f"Tensor '{candidate}' of '{self.reader.label}' has shape "
                                 f"{list(self.reader.tensors[candidate].shape)}, its config says {list(shape)}.")
        return found

    def materialize(self, names: Iterable[str], requires_grad: bool) -> dict[str, nn.Parameter]:
        """Read these parameters from the checkpoint (float32, on the device) into the skeleton."""
        params = {}
        for name in names:
            tensor = self.reader.get(self.checkpoint_names[name][0]).to(self.device, torch.float32)
            param = params[name] = nn.Parameter(tensor, requires_grad=requires_grad)
            for module, attr in self._where[name]:  # every place, so tied weights stay one tensor
                module._parameters[attr] = param
        return params

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            for module, attr in self._where[name]:
                module._parameters[attr] = self.meta[name]

    @contextmanager
    def layers_replaced(self, stand_ins: list[nn.Module]):
        setattr(self._parent, self._attr, nn.ModuleList(stand_ins))
        try:
            yield
        finally:
            setattr(self._parent, self._attr, self.layers)


def run_layer(layer: nn.Module, call: tuple[tuple, dict, bool], hidden: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The layer's output hidden state, and whether the layer returns a tuple (transformers 4)."""
    args, kwargs, by_keyword = call
    out = layer(*args, hidden_states=hidden, **kwargs) if by_keyword else layer(hidden, *args, **kwargs)
    if isinstance(out, (tuple, list)):
        return out[0], True
    return out, False


def detached(value):
    """The captured layer arguments, cut from the probe's autograd graph."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(detached(v) for v in value)
    if isinstance(value, dict):
        return {k: detached(v) for k, v in value.items()}
    return value


def parameter_plan(reader: ModelReader) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """The Fisher file's tensors: every checkpoint tensor that is a parameter, as float32."""
    sk = Skeleton(reader, torch.device("cpu"))
    return [(name, tuple(reader.tensors[name].shape), torch.float32)
            for names in sk.checkpoint_names.values() for name in names]
