"""On-policy distillation (GKD's lmbda, Agarwal et al. 2024): on a share of the training batches the
student writes the completions itself (sampling with its KV cache) and the teacher scores every token
it wrote; the loss covers those tokens only. The other batches train on the data as usual."""

from __future__ import annotations

import dataclasses
import random

import torch

import fusion_gui.engine.distill.losses as L
from fusion_gui.engine.distill.batch_loss import batch_loss
from fusion_gui.engine.distill.teacher_events import StudentSample

SAMPLE_TOKENS = 48  # tokens of a live sample the view shows


def generate_completions(model, prompts: torch.Tensor, max_new_tokens: int, temperature: float,
                         eos_id: int | None, pad_id: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt + completion ids [B, P + n], mask [B, P + n - 1] of the logit positions that predict a
    generated token, up to and including each row's first EOS)."""
    rows = model.get_output_embeddings().weight.shape[0]
    padded = list(range(vocab, rows)) or None  # embedding rows no tokenizer id names: never sampled
    was_training = model.training
    model.eval()  # no dropout while sampling
    try:
        with torch.no_grad():
            out = model.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts),
                                 max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                                 temperature=temperature if temperature > 0 else None, top_k=0, top_p=1.0,
                                 use_cache=True, pad_token_id=pad_id, eos_token_id=eos_id,
                                 suppress_tokens=padded)
    finally:
        model.train(was_training)
    written = out[:, prompts.shape[1]:]
    keep = torch.ones_like(written, dtype=torch.bool)
    if eos_id is not None:  # tokens after a row's first EOS are padding
        after_eos = (written == eos_id).int().cumsum(1) - (written == eos_id).int()
        keep = after_eos == 0
    mask = torch.zeros(out.shape[0], out.shape[1] - 1, dtype=torch.bool, device=out.device)
    mask[:, prompts.shape[1] - 1:] = keep
    return out, mask


class OnPolicyMixin:
    """Put before DistillTrainer (teacher_setup does): GKD's on-policy batches (`on_policy`: an
    OnPolicySpec); `emit` receives the live StudentSample events, `tokenizer` decodes them."""

    def __init__(self, *args, on_policy, tokenizer, emit, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_policy, self.sample_tokenizer, self.emit = on_policy, tokenizer, emit
        self.coin = random.Random(self.args.seed)  # which batches are on-policy: the same in a rerun
        self.last_sample_step = -1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training or self.coin.random() >= self.on_policy.lmbda:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        spec, tok, vocab = self.on_policy, self.sample_tokenizer, self.setup.vocab
        ids = inputs["input_ids"]
        prompts = ids[:, : ids.shape[1] - spec.max_new_tokens]
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        seq, mask = generate_completions(self.accelerator.unwrap_model(model), prompts, spec.max_new_tokens,
                                         spec.temperature, tok.eos_token_id, pad, vocab)
        labels = torch.full_like(seq, -100)  # loss on the written tokens only (batch_loss masks the rest)
        labels[:, 1:][mask] = seq[:, 1:][mask]
        # the divergences to the teacher; data losses (ce) do not apply to the student's own text
        divergences = tuple(s for s in self.setup.specs if s.name in L.LOGIT_LOSSES)
        setup = dataclasses.replace(self.setup, specs=divergences or self.setup.specs[:0])
        if not divergences:
            out = model(input_ids=seq)
            total, record = out.logits.sum() * 0.0, {"total": 0.0}  # nothing to match: this batch teaches nothing
        else:
            total, record, out = batch_loss(setup, model, self.teacher, {"input_ids": seq, "labels": labels},
                                            self.taid.t if self.taid else None, False)
        self.recorder.add("train", record)
        step = self.state.global_step + 1
        if spec.samples_every and step != self.last_sample_step and (step == 1 or step % spec.samples_every == 0):
            self.last_sample_step = step
            with torch.no_grad():
                t_logits = self.teacher(input_ids=seq[:1]).logits[0, :-1, :vocab]
            self.emit(_sample(step, tok, seq[0], mask[0], t_logits, prompts.shape[1]))
        return (total, out) if return_outputs else total


def _sample(step: int, tok, seq: torch.Tensor, mask: torch.Tensor, t_logits: torch.Tensor, prompt_len: int):
    """The first row's completion, each token with the teacher's log-probability of it (at temperature 1)."""
    log_p = torch.log_softmax(t_logits.float(), -1)
    positions = mask.nonzero().flatten()[:SAMPLE_TOKENS].tolist()
    tokens = tuple(tok.decode([int(seq[p + 1])]) for p in positions)
    scores = tuple(float(log_p[p, seq[p + 1]]) for p in positions)
    prompt = tok.decode(seq[max(0, prompt_len - 24):prompt_len].tolist())
    return StudentSample(step, prompt, tokens, scores)
