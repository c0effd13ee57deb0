"""The layer-streamed estimator of a causal language model's diagonal Fisher (fisher_prepare.py has
the settings, the cache and the merge's side; fisher_skeleton.py the meta-device model).

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
from collections.abc import Callable, Generator
from pathlib import Path

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.methods.fisher_skeleton import Capture, Inject, Recorder, Skeleton, Stop, detached, run_layer
from fusion_gui.events import StepProgress


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
    sk = Skeleton(reader, device)
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

    capture = Capture()
    recorders = [Recorder(layer, i, capture) for i, layer in enumerate(sk.layers)]

    def layer0_input(s: int) -> torch.Tensor:
        with sk.layers_replaced(recorders):
            try:
                model(input_ids=ids[s:s + 1], use_cache=False)
            except Stop:
                return capture.hidden
        raise InputError(f"The fisher method could not find where '{reader.label}' calls its decoder layers.")

    # 1. capture: layer 0's input per block; how each layer is called (the same for every block:
    # all have the same length and no padding); which parameters feed layer 0 (probed once).
    params = sk.materialize(sk.before_layers, requires_grad=True)
    capture.stop_at = n - 1
    layer0_input(0).sum().backward()
    feeds_layers = {name for name, p in params.items() if p.grad is not None}
    capture.calls = {i: detached(call) for i, call in capture.calls.items()}
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
                out, returns_tuple = run_layer(sk.layers[i], capture.calls[i], hidden[s:s + 1].to(device))
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
        with sk.layers_replaced([Inject(x, returns_tuple)]):
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
            out, _ = run_layer(sk.layers[i], capture.calls[i], x)
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
