"""Distillation losses: pure functions of logits (or hidden states), plus TAID's schedule of t.

Every divergence takes logits of shape [..., vocab] and an optional boolean mask of shape [...]
(True = a position that counts) and returns the mean over the counted positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_position.mean()
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # float32 softmax: bf16 log-probs lose too much to take differences of
    return F.log_softmax(logits.float() / temperature, dim=-1)


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per position, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def forward_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student): mass-covering, the classic distillation loss."""
    return _masked_mean(kl(_log_probs(teacher_logits, temperature), _log_probs(student_logits, temperature)), mask)


def reverse_kl(student_logits, teacher_logits, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL(student || teacher): mode-seeking."""
    return _masked_mean(kl(_log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)), mask)


def generalized_jsd(student_logits, teacher_logits, mask=None, beta: float = 0.5,
                    temperature: float = 1.0) -> torch.Tensor:
    """TRL GKD's generalized JSD: with M = beta*teacher + (1-beta)*student,
    beta*KL(teacher||M) + (1-beta)*KL(student||M); beta=0 is forward KL, beta=1 reverse KL."""
    log_s, log_t = _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    if beta == 0:
        per = kl(log_t, log_s)
    elif beta == 1:
        per = kl(log_s, log_t)
    else:
        log_m = torch.logsumexp(torch.stack([log_s + math.log(1 - beta), log_t + math.log(beta)]), dim=0)
        per = beta * kl(log_t, log_m) + (1 - beta) * kl(log_s, log_m)
    return _masked_mean(per, mask)


def taid_target_log_probs(student_logits, teacher_logits, t: float, temperature: float = 1.0) -> torch.Tensor:
    """TAID's intermediate target: softmax((1-t) * detached student logits + t * teacher logits)."""
    mixed = (1 - t) * student_logits.detach().float() + t * teacher_logits.float()
    return _log_probs(mixed, temperature)


def taid(student_logits, teacher_logits, t: float, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL(p_t || student) where p_t moves from the student (t=0) to the teacher (t=1)."""
    target = taid_target_log_probs(student_logits, teacher_logits, t, temperature)
    return _masked_mean(kl(target, _log_probs(student_logits, temperature)), mask)


def hidden_mse(student_hidden, teacher_hidden, mask=None) -> torch.Tensor:
    """Mean squared difference per position (student already projected to the teacher's width)."""
    return _masked_mean((student_hidden.float() - teacher_hidden.float()).pow(2).mean(-1), mask)


def hidden_cosine(student_hidden, teacher_hidden, mask=None) -> torch.Tensor:
    """1 - cosine similarity per position."""
    return _masked_mean(1 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1), mask)


def cross_entropy(student_logits, labels, mask=None) -> torch.Tensor:
    """Next-token cross-entropy on already-shifted labels (the usual language-model loss)."""
    per = F.cross_entropy(student_logits.float().flatten(0, -2), labels.flatten(), reduction="none")
    return _masked_mean(per.view(labels.shape), mask)


@dataclass
class TaidSchedule:
    """TAID's adaptive t (Shing et al., ICLR 2025, Algorithm 1).

    t never falls below the linear ramp from t_start to t_end; when the TAID loss keeps falling
    (momentum of its relative change is high) t moves faster: dt = alpha * sigmoid(m) * (1 - t).
    """

    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    t: float | None = None
    prev_loss: float | None = None
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if self.t is None:
            self.t = self.t_start

    def update(self, loss: float, step: int, total_steps: int) -> float:
        """Feed the TAID loss of the step just taken; returns the t for the next step."""
        if self.prev_loss is None:
            self.prev_loss = loss
            return self.t
        relative = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.beta * self.momentum + (1 - self.beta) * relative
        linear = self.t_start + (self.t_end - self.t_start) * step / max(1, total_steps)
        step_up = self.alpha / (1 + math.exp(-self.momentum)) * (1 - self.t)
        self.t = min(self.t_end, max(linear, self.t + step_up))
        self.prev_loss = loss
        return self.t

    def state_dict(self) -> dict:
        return {"t": self.t, "prev_loss": self.prev_loss, "momentum": self.momentum}

    def load_state_dict(self, state: dict) -> None:
        self.t, self.prev_loss, self.momentum = state["t"], state["prev_loss"], state["momentum"]


LOSSES = ("forward_kl", "reverse_kl", "jsd", "taid", "hidden_mse", "hidden_cosine", "ce", "uld")
LOGIT_LOSSES = ("forward_kl", "reverse_kl", "jsd", "taid", "uld")
