"""One batch's distillation loss: the configured terms on the positions that carry loss, either from
the models' full logits or chunk by chunk from their hidden states (chunked.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.chunked import Head, chunked_loss, split_head
from fusion_gui.engine.distill.uld_loss import uld


@dataclass(frozen=True)
class LossSetup:
    specs: tuple  # LossSpec
    temperature: float
    vocab: int  # logits are sliced to the output rows both models have
    chunk: int = 0  # positions per chunk of the logit losses; 0: full logits


def logit_terms(specs, s_logits, t_logits, targets, mask, temperature: float, taid_t, evaluating: bool) -> dict:
    """Every logit loss of `specs` (and the held-out metrics while evaluating), each a mean over `mask`."""
    T, terms = temperature, {}
    for spec in specs:
        if spec.name == "forward_kl":
            terms[spec.name] = L.forward_kl(s_logits, t_logits, mask, temperature=T)
        elif spec.name == "reverse_kl":
            terms[spec.name] = L.reverse_kl(s_logits, t_logits, mask, temperature=T)
        elif spec.name == "jsd":
            terms[spec.name] = L.generalized_jsd(s_logits, t_logits, mask, beta=spec.params["beta"], temperature=T)
        elif spec.name == "taid":
            terms[spec.name] = L.taid(s_logits, t_logits, taid_t, mask, temperature=T)
        elif spec.name == "ce":
            terms[spec.name] = L.cross_entropy(s_logits, targets, mask)
        elif spec.name == "uld":  # one vocabulary: ULD over the whole distributions
            terms[spec.name] = uld(s_logits, t_logits, None, mask, temperature=T)
    if evaluating:  # the numbers a user compares: distance to the teacher, both perplexities
        with torch.no_grad():
            terms["kl_teacher"] = L.forward_kl(s_logits, t_logits, mask)
            terms["ce_student"] = L.cross_entropy(s_logits, targets, mask)
            terms["ce_teacher"] = L.cross_entropy(t_logits, targets, mask)
    return terms


def weighted(specs, terms: dict, temperature: float):
    """The total: logit losses at temperature T have gradients ~1/T^2 smaller (Hinton et al.): scale back."""
    T = temperature
    return sum(s.weight * terms[s.name] * (T * T if s.name in L.LOGIT_LOSSES else 1.0)
               for s in specs if s.name in terms)


def hidden_terms(specs, s_h, t_h, mask, projection) -> dict:
    """Last-hidden-state losses, the student's projected to the teacher's width when they differ."""
    terms = {}
    for spec in specs:
        if spec.name.startswith("hidden_"):
            s = projection(s_h.to(projection.weight.dtype)) if projection is not None else s_h
            fn = L.hidden_mse if spec.name == "hidden_mse" else L.hidden_cosine
            terms[spec.name] = fn(s, t_h, mask)
    return terms


def can_chunk(model, teacher) -> tuple[Head, Head] | None:
    s, t = split_head(model), split_head(teacher)
    return (s, t) if s is not None and t is not None else None


def batch_loss(setup: LossSetup, model, teacher, inputs: dict, taid_t, evaluating: bool, projection=None,
               heads: tuple[Head, Head] | None = None):
    """(total loss, {term: float}, the student's outputs). `heads` (can_chunk) selects the chunked path."""
    ids = inputs["input_ids"]
    labels = inputs.get("labels", ids)
    mask, targets = labels[:, 1:] != -100, ids[:, 1:]
    need_hidden = any(s.name.startswith("hidden_") for s in setup.specs)
    if heads is None or not setup.chunk:
        out = model(input_ids=ids, output_hidden_states=need_hidden)
        with torch.no_grad():
            t_out = teacher(input_ids=ids, output_hidden_states=need_hidden)
        s_logits, t_logits = out.logits[:, :-1, : setup.vocab], t_out.logits[:, :-1, : setup.vocab]
        terms = logit_terms(setup.specs, s_logits, t_logits, targets, mask, setup.temperature, taid_t, evaluating)
        if need_hidden:
            terms |= hidden_terms(setup.specs, out.hidden_states[-1], t_out.hidden_states[-1],
                                  labels != -100, projection)
        total = weighted(setup.specs, terms, setup.temperature)
        return total, {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}, out
    s_head, t_head = heads
    out = s_head.body(input_ids=ids)
    with torch.no_grad():
        t_hidden = t_head.body(input_ids=ids).last_hidden_state
    s_hidden = out.last_hidden_state
    if bool(mask.all()):  # plain text: every position counts; a reshape spares the gather and its scatter
        s_rows = s_hidden[:, :-1].reshape(-1, s_hidden.shape[-1])
        t_rows, row_targets = t_hidden[:, :-1].reshape(-1, t_hidden.shape[-1]), targets.reshape(-1)
    else:
        s_rows, t_rows, row_targets = s_hidden[:, :-1][mask], t_hidden[:, :-1][mask], targets[mask]
    n = max(1, len(s_rows))
    logit_specs = [s for s in setup.specs if not s.name.startswith("hidden_")]

    def chunk_loss(s_logits, start, stop):
        with torch.no_grad():
            t_logits = t_head.logits(t_rows[start:stop], vocab=setup.vocab)
        parts = logit_terms(logit_specs, s_logits, t_logits, row_targets[start:stop], None, setup.temperature,
                            taid_t, evaluating)
        share = (stop - start) / n  # chunk means, weighed by their share of the positions
        loss = weighted(logit_specs, parts, setup.temperature) * share
        loss = loss if torch.is_tensor(loss) else s_logits.sum() * 0
        return loss, {k: float(v.detach()) * share for k, v in parts.items()}

    total, record = chunked_loss(s_rows, s_head, setup.vocab, setup.chunk, chunk_loss)
    if need_hidden:
        extra = hidden_terms(setup.specs, s_hidden, t_hidden, labels != -100, projection)
        total = total + weighted(setup.specs, extra, setup.temperature)
        record |= {k: float(v.detach()) for k, v in extra.items()}
    return total, record | {"total": float(total.detach())}, out
