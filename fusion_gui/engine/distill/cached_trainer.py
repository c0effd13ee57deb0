"""Training against a teacher cache: the same Trainer, with the teacher's logits replaced by its stored
top-k log-probabilities and the sparse KL that counts the mass outside them. With `loss_chunk` the
student's logits are made a chunk of positions at a time (chunked.py), as with a live teacher."""

from __future__ import annotations

import torch

import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.chunked import chunked_loss, split_head
from fusion_gui.engine.distill.sparse_kl import sparse_forward_kl


def cache_terms(specs, s_logits, cached, targets, mask, temperature: float, evaluating: bool) -> dict:
    """forward_kl (sparse) and ce, as the config allows with a cache, and the held-out metrics while evaluating;
    cached = (top ids, top log-probs, rest mass) for the same positions as s_logits."""
    terms = {}
    for spec in specs:
        if spec.name == "forward_kl":
            terms[spec.name] = sparse_forward_kl(s_logits, *cached, mask, temperature=temperature)
        elif spec.name == "ce":
            terms[spec.name] = L.cross_entropy(s_logits, targets, mask)
    if evaluating:  # the teacher's own perplexity is not in the cache
        with torch.no_grad():
            if temperature == 1.0:
                terms["kl_teacher"] = sparse_forward_kl(s_logits, *cached, mask)
            terms["ce_student"] = L.cross_entropy(s_logits, targets, mask)
    return terms


def _weighted(specs, terms, temperature):
    return sum(s.weight * terms[s.name] * (temperature ** 2 if s.name in L.LOGIT_LOSSES else 1.0) for s in specs)


class CachedTeacherMixin:
    """Put before DistillTrainer (teacher_setup does): its teacher is a TeacherCache (`teacher_cache`);
    no teacher model exists."""

    def __init__(self, *args, teacher_cache, **kwargs):
        super().__init__(*args, teacher=None, **kwargs)
        self.teacher_cache = teacher_cache

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs["input_ids"]
        labels = inputs.get("labels", ids)
        mask, targets = labels[:, 1:] != -100, ids[:, 1:]  # chat data's prompts carry no loss
        specs, T, vocab, evaluating = self.setup.specs, self.setup.temperature, self.setup.vocab, not model.training
        cached = self.teacher_cache.lookup(ids)
        unwrapped = self.accelerator.unwrap_model(model)
        head = split_head(unwrapped) if self.setup.chunk and unwrapped is model else None
        if head is None:
            out = model(input_ids=ids)
            terms = cache_terms(specs, out.logits[:, :-1, :vocab], cached, targets, mask, T, evaluating)
            total = _weighted(specs, terms, T)
            record = {k: float(v.detach()) for k, v in terms.items()}
        else:  # only the positions that carry loss reach the output layer, a chunk at a time
            out = head.body(input_ids=ids)
            rows, row_targets = out.last_hidden_state[:, :-1][mask], targets[mask]
            row_cached = [c[mask] for c in cached]
            n = max(1, len(rows))

            def chunk_loss(s_logits, start, stop):
                parts = cache_terms(specs, s_logits, [c[start:stop] for c in row_cached], row_targets[start:stop],
                                    None, T, evaluating)
                share = (stop - start) / n  # chunk means, weighed by their share of the positions
                return _weighted(specs, parts, T) * share, {k: float(v.detach()) * share for k, v in parts.items()}

            total, record = chunked_loss(rows, head, vocab, self.setup.chunk, chunk_loss)
        self.recorder.add("train" if model.training else "eval", record | {"total": float(total.detach())})
        return (total, out) if return_outputs else total
