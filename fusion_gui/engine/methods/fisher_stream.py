"""The layer-streamed estimator of a causal language model's diagonal Fisher (see fisher.py for the
settings, the cache and the merge's side).

Fisher-weighted averaging (Matena & Raffel, https://arxiv.org/abs/2111.09832) weighs every
element of every input by that model's Fisher. We estimate the diagonal *empirical* Fisher: the
mean over calibration blocks of the squared gradient of the block's language-model loss
(transformers' mean token cross-entropy with the block as its own labels).

Memory stays near one decoder layer, whatever the model size. The model is a skeleton whose
parameters live on the meta device; real tensors are read from the checkpoint into one part of it
at a time:
  1. capture: the embeddings run per block and the input of decoder layer 0 is recorded, plus how
     the model calls each layer (attention mask, position embeddings, ...), as quantizers do;
  2. forward: layer by layer, each block's layer input is kept on disk (one file per layer);
  3. tail: final norm + LM head + loss per block, with gradients, give the gradient of the loss
     with respect to the last hidden state;
  4. backward: layer by layer in reverse, each layer's forward is recomputed from its saved input
     and back-propagated with the upstream gradient; the squared parameter gradients of that
     block are summed into the layer's Fisher, which is written out at once;
  5. embeddings: the capture runs again with gradients and back-propagates the gradient of
     layer 0's input.
Every gradient is per block (batch size 1), so squaring it gives exactly the per-sample Fisher.

Tied input/output embeddings: the per-block gradient of the shared matrix is the sum of the
head's part g_h and the embedding's part g_e, so its Fisher term is (g_h + g_e)^2 =
g_h^2 + 2 g_h g_e + g_e^2. g_e is zero outside the rows of the block's tokens, so the tail keeps
only those rows of g_h per block for the cross term.

Limits: parameters that reach the layers through anything but the hidden state (e.g. a learned
relative position bias passed as a layer argument) get no Fisher from that path; checkpoints whose
tensor names transformers converts on loading (e.g. fused MoE experts) are refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.events import StepProgress


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


class _Stop(Exception):
    """Raised by a layer stand-in to end the model's forward once it has what it needs."""


class _Capture:
    def __init__(self) -> None:
        self.calls: dict[int, tuple[tuple, dict, bool]] = {}  # layer -> (args, kwargs, hidden by keyword)
        self.hidden: torch.Tensor | None = None  # layer 0's input
        self.stop_at = 0


class _Recorder(nn.Module):
    """Stands in for decoder layer `index`: records how the model calls it, passes the hidden
    state through, and stops the forward at `capture.stop_at`."""

    def __init__(self, layer: nn.Module, index: int, capture: _Capture):
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
            raise _Stop
        return hidden


class _Inject(nn.Module):
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


class _Skeleton:
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


def _run_layer(layer: nn.Module, call: tuple[tuple, dict, bool], hidden: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """The layer's output hidden state, and whether the layer returns a tuple (transformers 4)."""
    args, kwargs, by_keyword = call
    out = layer(*args, hidden_states=hidden, **kwargs) if by_keyword else layer(hidden, *args, **kwargs)
    if isinstance(out, (tuple, list)):
        return out[0], True
    return out, False


def _detached(value):
    """The captured layer arguments, cut from the probe's autograd graph."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, dict):
        return {k: _detached(v) for k, v in value.items()}
    return value


Sink = Callable[[str, torch.Tensor], None]


def stream_fisher(reader: ModelReader, blocks: torch.Tensor, sink: Sink, workdir: Path,
                  device: torch.device | str = "cpu", cancel: CancelToken | None = None,
                  stage: str = "Fisher") -> Generator[StepProgress, None, float]:
    """Estimate the model's diagonal Fisher on `blocks` ([n, seq] token ids), layer by layer.

    Calls sink(checkpoint tensor name, float32 Fisher) once per parameter (once per name when a
    checkpoint stores a tied tensor twice), yields StepProgress per layer, and returns the squared
    L2 norm of the whole Fisher. Layer inputs are kept under `workdir`.
    """
    cancel = cancel or CancelToken()
    device = torch.device(device)
    start = time.perf_counter()
    sk = _Skeleton(reader, device)
    model, n, count = sk.model, len(sk.layers), len(blocks)
    ids = blocks.to(device)
    steps, done = 2 * n + 3, 0
    squares = 0.0
    acts = Path(workdir)
    acts.mkdir(parents=True, exist_ok=True)

    def step(what: str) -> StepProgress:
        nonlocal done
        done += 1
        return StepProgress(f"{stage}: {what}", done, steps, time.perf_counter() - start)

    emitted: set[str] = set()

    def emit(name: str, total: torch.Tensor) -> None:
        nonlocal squares
        emitted.add(name)
        fisher = total.div_(count)
        squares += float(fisher.double().square().sum())
        for checkpoint_name in sk.checkpoint_names[name]:
            sink(checkpoint_name, fisher)

    capture = _Capture()
    recorders = [_Recorder(layer, i, capture) for i, layer in enumerate(sk.layers)]

    def layer0_input(s: int) -> torch.Tensor:
        with sk.layers_replaced(recorders):
            try:
                model(input_ids=ids[s:s + 1], use_cache=False)
            except _Stop:
                return capture.hidden
        raise InputError(f"The fisher method could not find where '{reader.label}' calls its decoder layers.")

    # 1. capture: layer 0's input per block; how each layer is called (the same for every block:
    # all have the same length and no padding); which parameters feed layer 0 (probed once).
    params = sk.materialize(sk.before_layers, requires_grad=True)
    capture.stop_at = n - 1
    layer0_input(0).sum().backward()
    feeds_layers = {name for name, p in params.items() if p.grad is not None}
    capture.calls = {i: _detached(call) for i, call in capture.calls.items()}
    for p in params.values():
        p.grad = None
    capture.stop_at = 0
    with torch.no_grad():
        hidden = []
        for s in range(count):
            cancel.raise_if_cancelled()
            hidden.append(layer0_input(s).detach().to("cpu", torch.float32))
    sk.release(params)
    hidden = torch.cat(hidden)
    yield step("embeddings forward")

    # 2. forward, layer by layer; each layer's input goes to disk for the backward pass
    returns_tuple = False
    for i in range(n):
        torch.save(hidden, acts / f"input-{i}.pt")
        params = sk.materialize(sk.layer_names[i], requires_grad=False)
        outputs = []
        with torch.no_grad():
            for s in range(count):
                cancel.raise_if_cancelled()
                out, returns_tuple = _run_layer(sk.layers[i], capture.calls[i], hidden[s:s + 1].to(device))
                outputs.append(out.to("cpu", torch.float32))
        sk.release(params)
        hidden = torch.cat(outputs)
        del outputs
        yield step(f"forward layer {i + 1} of {n}")

    # 3. tail: the loss per block, its gradients for the head and for the last hidden state
    params = sk.materialize(sk.after_layers, requires_grad=True)
    totals: dict[str, torch.Tensor] = {}
    head_grads: dict[str, dict[int, tuple]] = {}  # per-block head gradients of parameters also used before the layers
    grads = []
    for s in range(count):
        cancel.raise_if_cancelled()
        x = hidden[s:s + 1].to(device).requires_grad_(True)
        with sk.layers_replaced([_Inject(x, returns_tuple)]):
            # Embedding output is ignored by the stand-in; zeros spare looking the tokens up.
            loss = model(inputs_embeds=torch.zeros_like(x), labels=ids[s:s + 1], use_cache=False).loss
        loss.backward()
        for name, p in params.items():
            if p.grad is None:
                continue
            totals[name] = totals[name].add_(p.grad.square()) if name in totals else p.grad.square()
            if name in feeds_layers:
                rows = ids[s].unique() if name == sk.embed_weight else None
                head_grads.setdefault(name, {})[s] = (rows, p.grad if rows is None else p.grad[rows])
            p.grad = None
        grads.append(x.grad.to("cpu"))
    sk.release(params)
    del hidden, params
    for name in [n for n in totals if n not in feeds_layers]:
        emit(name, totals.pop(name))
    yield step("loss and head")

    # 4. backward, layer by layer in reverse
    for i in reversed(range(n)):
        inputs = torch.load(acts / f"input-{i}.pt", weights_only=True)
        params = sk.materialize(sk.layer_names[i], requires_grad=True)
        layer_totals = {name: torch.zeros_like(p) for name, p in params.items()}
        upstream = []
        for s in range(count):
            cancel.raise_if_cancelled()
            x = inputs[s:s + 1].to(device).requires_grad_(True)
            out, _ = _run_layer(sk.layers[i], capture.calls[i], x)
            out.backward(grads[s].to(device))
            for name, p in params.items():
                if p.grad is not None:
                    layer_totals[name].add_(p.grad.square())
                    p.grad = None
            upstream.append(x.grad.to("cpu"))
        grads = upstream
        sk.release(params)
        for name, total in layer_totals.items():
            emit(name, total)
        del inputs, params, layer_totals
        (acts / f"input-{i}.pt").unlink()
        yield step(f"backward layer {i + 1} of {n}")

    # 5. embeddings: back-propagate layer 0's input gradient
    params = sk.materialize(sk.before_layers, requires_grad=True)
    for s in range(count):
        cancel.raise_if_cancelled()
        layer0_input(s).backward(grads[s].to(device))
        for name in feeds_layers:
            g = params[name].grad
            totals[name] = totals[name].add_(g.square()) if name in totals else g.square()
            if s in head_grads.get(name, {}):  # tied weights: the cross term 2 g_head g_embed
                rows, head = head_grads[name].pop(s)
                if rows is None:
                    totals[name].add_(2 * head * g)
                else:
                    totals[name][rows] += 2 * head * g[rows]
            params[name].grad = None
    sk.release(params)
    for name, total in totals.items():
        emit(name, total)
    for name in sk.outside:  # a parameter no gradient reaches has a zero Fisher
        if name not in emitted:
            emit(name, torch.zeros(sk.meta[name].shape, device=device))
    yield step("embeddings backward")
    return squares


def parameter_plan(reader: ModelReader) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """The Fisher file's tensors: every checkpoint tensor that is a parameter, as float32."""
    sk = _Skeleton(reader, torch.device("cpu"))
    return [(name, tuple(reader.tensors[name].shape), torch.float32)
            for names in sk.checkpoint_names.values() for name in names]
