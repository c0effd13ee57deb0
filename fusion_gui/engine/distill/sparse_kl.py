"""Forward KL against a teacher known only by its top-k log-probabilities and the mass it left out.

The teacher's distribution is read as k named tokens plus one bucket holding the rest of its mass;
the student's is read the same way (its probability on the same k tokens, and everything else as one
bucket). KL over those k + 1 outcomes is exact when k covers the vocabulary and a lower bound otherwise
(grouping outcomes never increases a KL divergence).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def teacher_top_k(teacher_logits: torch.Tensor, k: int, temperature: float = 1.0):
    """(ids int32 [..., k], log-probs float32 [..., k], rest mass float32 [...]) of the teacher at T."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    k = min(k, log_p.shape[-1])
    values, ids = log_p.topk(k, dim=-1)
    rest = log_p.scatter(-1, ids, float("-inf")).logsumexp(-1).exp()  # exactly 0 when k = vocabulary
    return ids.to(torch.int32), values, rest


def sparse_forward_kl(student_logits: torch.Tensor, ids: torch.Tensor, teacher_log_probs: torch.Tensor,
                      rest: torch.Tensor, mask: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over the teacher's top-k tokens plus one bucket for the rest, averaged over
    the positions mask keeps. student_logits [..., V]; ids, teacher_log_probs [..., k]; rest [...]."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)
    ids = ids.long()
    log_q_k = log_q.gather(-1, ids)
    # the student's mass outside the k tokens; a finite fill keeps gradients finite when k = vocabulary
    outside = log_q.scatter(-1, ids, torch.finfo(log_q.dtype).min).logsumexp(-1)
    p_k = teacher_log_probs.float().exp()
    rest = rest.float().clamp(min=0.0)
    per = (p_k * (teacher_log_probs.float() - log_q_k)).sum(-1)
    per = per + torch.xlogy(rest, rest) - rest * outside
    if mask is None:
        return per.mean()
    mask = mask.to(per.dtype)
    return (per * mask).sum() / mask.sum().clamp(min=1)
