"""Losses between a teacher and a student of different vocabularies, at aligned positions.

- `shared_kl`: KL(teacher || student) over the tokens both vocabularies hold, plus one bucket for each
  side's mass on the tokens only it has. Exact (the full KL) when the vocabularies are the same.
- `uld`: the universal logit distillation loss (Boizard et al. 2024) on the tokens only one side has:
  the L1 (1-D Wasserstein) distance between the two sides' probabilities sorted from largest to smallest,
  the shorter padded with zeros; it needs no token correspondence at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(per: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per.mean()
    mask = mask.to(per.dtype)
    return (per * mask).sum() / mask.sum().clamp(min=1)


def _log_mass(log_p: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log of the probability on `ids` (a very negative finite number when there are none)."""
    if len(ids) == 0:
        return torch.full(log_p.shape[:-1], torch.finfo(log_p.dtype).min, device=log_p.device)
    return log_p.index_select(-1, ids).logsumexp(-1)


def shared_kl(student_logits, teacher_logits, vocab, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """KL over the shared tokens and one bucket of the rest; vocab is a vocab_alignment.SharedVocab."""
    log_q = F.log_softmax(student_logits.float() / temperature, -1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, -1)
    s_ids, t_ids = vocab.student_ids.to(log_q.device), vocab.teacher_ids.to(log_q.device)
    lp, lq = log_p.index_select(-1, t_ids), log_q.index_select(-1, s_ids)
    per = (lp.exp() * (lp - lq)).sum(-1)
    rest_t = _log_mass(log_p, vocab.teacher_rest.to(log_p.device)).exp()
    rest_s = _log_mass(log_q, vocab.student_rest.to(log_q.device))
    per = per + torch.xlogy(rest_t, rest_t) - rest_t * rest_s
    return _masked_mean(per, mask)


def sorted_wasserstein(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per position: sum |sort(p) - sort(q)| with both sorted descending, the shorter padded with zeros."""
    width = max(p.shape[-1], q.shape[-1])
    p = F.pad(p.sort(-1, descending=True).values, (0, width - p.shape[-1]))
    q = F.pad(q.sort(-1, descending=True).values, (0, width - q.shape[-1]))
    return (p - q).abs().sum(-1)


def uld(student_logits, teacher_logits, vocab=None, mask=None, temperature: float = 1.0) -> torch.Tensor:
    """ULD on the tokens outside the shared vocabulary (on the whole vocabularies when vocab is None)."""
    q = F.softmax(student_logits.float() / temperature, -1)
    p = F.softmax(teacher_logits.float() / temperature, -1)
    if vocab is not None:
        q = q.index_select(-1, vocab.student_rest.to(q.device))
        p = p.index_select(-1, vocab.teacher_rest.to(p.device))
    if q.shape[-1] == 0 and p.shape[-1] == 0:
        return student_logits.sum() * 0.0  # one vocabulary: nothing outside the shared tokens
    return _masked_mean(sorted_wasserstein(q, p), mask)
