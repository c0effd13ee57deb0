"""The distillation loss in chunks along the sequence, so that the batch x sequence x vocabulary
logits of teacher and student never exist at once (as Liger's fused linear losses do).

The models run without their output layer; then, a chunk of positions at a time, the output layer
makes both models' logits, the loss is taken, and the gradients of that chunk's loss with respect to
the student's hidden states and output weights are computed at once and kept (a [positions, hidden]
and a [vocab, hidden] tensor), the chunk's logits dropped. Backward hands the kept gradients on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Head:
    """A causal LM split into the part that makes hidden states and its output layer."""

    body: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None  # Gemma 2's final logit soft-capping

    def logits(self, hidden: torch.Tensor, weight=None, bias=None, vocab: int | None = None) -> torch.Tensor:
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        out = torch.nn.functional.linear(hidden, weight[:vocab], None if bias is None else bias[:vocab])
        if self.softcap:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


def split_head(model) -> Head | None:
    """The body and output layer of a transformers causal LM (or a peft model around one); None where the
    logits are more than a linear layer of the last hidden state, so chunking would change them."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    body = getattr(inner, "base_model", None)
    if not isinstance(head, torch.nn.Linear) or body is None or body is inner:
        return None
    cfg = inner.config.get_text_config()
    if any(getattr(cfg, name, None) not in (None, 1, 1.0) for name in ("logit_scale", "logits_scaling")):
        return None
    return Head(body, head.weight, head.bias, getattr(cfg, "final_logit_softcapping", None) or None)


# chunk_loss(student logits, chunk start, chunk stop) -> (loss share of the chunk, {term: share as float})
ChunkLoss = Callable[[torch.Tensor, int, int], tuple[torch.Tensor, dict[str, float]]]


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, head, vocab, chunk, chunk_loss, terms):
        wants = (hidden.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad)
        grads = [torch.zeros_like(x) if want else None for x, want in zip((hidden, weight, bias), wants)]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, len(hidden), chunk):
            stop = min(len(hidden), start + chunk)
            with torch.enable_grad():
                leaves = [None if x is None else x.detach().requires_grad_(want)
                          for x, want in zip((hidden[start:stop], weight, bias), wants)]
                loss, parts = chunk_loss(head.logits(leaves[0], leaves[1], leaves[2], vocab), start, stop)
                needed = [i for i, want in enumerate(wants) if want]
                if needed:
                    for i, g in zip(needed, torch.autograd.grad(loss, [leaves[i] for i in needed],
                                                                allow_unused=True)):
                        if g is None:
                            continue
                        if i == 0:
                            grads[0][start:stop] = g
                        else:
                            grads[i] += g
            total += loss.detach().float()
            for k, v in parts.items():
                terms[k] = terms.get(k, 0.0) + v
        ctx.grads = grads
        return total

    @staticmethod
    def backward(ctx, grad_out):
        g = [None if x is None else x * grad_out.to(x.dtype) for x in ctx.grads]
        ctx.grads = None
        return g[0], g[1], g[2], None, None, None, None, None


def chunked_loss(hidden: torch.Tensor, head: Head, vocab: int, chunk: int,
                 chunk_loss: ChunkLoss) -> tuple[torch.Tensor, dict[str, float]]:
    """The sum over chunks of `chunk_loss` of the student's logits of `hidden` ([positions, width]),
    differentiable with respect to the hidden states and the output layer, and the summed terms."""
    terms: dict[str, float] = {}
    if not torch.is_grad_enabled() or not (hidden.requires_grad or head.weight.requires_grad):
        total = torch.zeros((), device=hidden.device)
        with torch.no_grad():
            for start in range(0, len(hidden), chunk):
                stop = min(len(hidden), start + chunk)
                loss, parts = chunk_loss(head.logits(hidden[start:stop], vocab=vocab), start, stop)
                total += loss.float()
                for k, v in parts.items():
                    terms[k] = terms.get(k, 0.0) + v
        return total, terms
    total = _ChunkedLoss.apply(hidden, head.weight, head.bias, head, vocab, chunk, chunk_loss, terms)
    return total, terms
