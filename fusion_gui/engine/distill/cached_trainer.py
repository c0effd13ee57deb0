"""Training against a teacher cache: the same Trainer, with the teacher's logits replaced by its stored
top-k log-probabilities and the sparse KL that counts the mass outside them."""

from __future__ import annotations

import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.sparse_kl import sparse_forward_kl


def loss_mask(inputs):
    """Positions that carry loss, aligned with logits[:, :-1]: labels of -100 (chat data's prompts) do not."""
    labels = inputs.get("labels")
    return None if labels is None else labels[:, 1:] != -100


class CachedTeacherMixin:
    """Put before DistillTrainer (teacher_setup does): its teacher is a TeacherCache (`teacher_cache`);
    no teacher model exists."""

    def __init__(self, *args, teacher_cache, **kwargs):
        super().__init__(*args, teacher=None, **kwargs)
        self.teacher_cache = teacher_cache

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs["input_ids"]
        out = model(input_ids=ids)
        s_logits, labels, T = out.logits[:, :-1, : self.setup.vocab], ids[:, 1:], self.setup.temperature
        mask = loss_mask(inputs)
        top_ids, top_log_probs, rest = self.teacher_cache.lookup(ids)
        terms = {}
        for spec in self.setup.specs:  # the config allows forward_kl and ce with a cache
            if spec.name == "forward_kl":
                terms[spec.name] = sparse_forward_kl(s_logits, top_ids, top_log_probs, rest, mask, temperature=T)
            else:
                terms[spec.name] = L.cross_entropy(s_logits, labels, mask)
        total = sum(s.weight * terms[s.name] * (T * T if s.name in L.LOGIT_LOSSES else 1.0) for s in self.setup.specs)
        record = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        if not model.training:  # the teacher's own perplexity is not in the cache
            if "forward_kl" in terms and T == 1.0:
                record["kl_teacher"] = record["forward_kl"]
            record["ce_student"] = float(L.cross_entropy(s_logits, labels, mask))
        self.recorder.add("train" if model.training else "eval", record)
        return (total, out) if return_outputs else total
