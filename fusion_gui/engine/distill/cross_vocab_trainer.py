"""Training against a teacher of another vocabulary: each batch is re-read as the teacher's tokens, the
positions aligned by character offsets, and the losses taken where they align (uld_loss)."""

from __future__ import annotations

import torch

import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.uld_loss import shared_kl, uld

CROSS_VOCAB_LOSSES = ("forward_kl", "uld", "ce")  # forward_kl is the shared-vocabulary KL here


class CrossVocabMixin:
    """Put before DistillTrainer (teacher_setup does): `aligner` (SequenceAligner) and `shared`
    (SharedVocab) stand between the student's tokens and the teacher's."""

    def __init__(self, *args, aligner, shared, teacher_vocab, **kwargs):
        super().__init__(*args, **kwargs)
        self.aligner, self.shared, self.teacher_vocab = aligner, shared, teacher_vocab

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs["input_ids"]
        labels = inputs.get("labels", ids)
        mask, targets = labels[:, 1:] != -100, ids[:, 1:]
        t_ids, attention, t_pos = self.aligner.teacher_inputs(ids)
        out = model(input_ids=ids)
        s_logits, T = out.logits[:, :-1, : self.setup.vocab], self.setup.temperature
        with torch.no_grad():
            t_logits = self.teacher(input_ids=t_ids, attention_mask=attention).logits[..., : self.teacher_vocab]
            index = t_pos.clamp(min=0).unsqueeze(-1).expand(-1, -1, t_logits.shape[-1])
            t_logits = t_logits.gather(1, index)  # the teacher's logits at the aligned position, per student position
        aligned = mask & (t_pos >= 0)
        terms = {}
        for spec in self.setup.specs:  # the config check allows only these across vocabularies
            if spec.name == "forward_kl":
                terms[spec.name] = shared_kl(s_logits, t_logits, self.shared, aligned, T)
            elif spec.name == "uld":
                terms[spec.name] = uld(s_logits, t_logits, self.shared, aligned, T)
            elif spec.name == "ce":
                terms[spec.name] = L.cross_entropy(s_logits, targets, mask)
        total = sum(s.weight * terms[s.name] * (T * T if s.name != "ce" else 1.0) for s in self.setup.specs)
        record = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        if not model.training:  # the teacher's perplexity is over its own tokens: not comparable, left out
            record["kl_teacher"] = float(shared_kl(s_logits, t_logits, self.shared, aligned))
            record["ce_student"] = float(L.cross_entropy(s_logits, targets, mask))
            record["aligned_share"] = float(aligned.sum() / mask.sum().clamp(min=1))
        self.recorder.add("train" if model.training else "eval", record)
        return (total, out) if return_outputs else total
