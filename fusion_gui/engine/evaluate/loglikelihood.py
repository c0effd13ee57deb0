"""Log-likelihood of continuations given contexts, batched: the core of multiple-choice scoring.

Tokenization follows lm-evaluation-harness (trailing spaces of the context move to the
continuation; context + continuation is encoded whole and split where the context's own encoding
ends), so scores agree with lm-eval's. Faster than its HFLM because sequences are left-padded, so
every row's continuation ends at the last position: the model computes logits only for the last
K positions (logits_to_keep) instead of the whole sequence times the vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval's HFLM encodes them for a causal model."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    special = _special_kwargs(tokenizer, context)
    if not context:  # lm-eval scores an empty context after its prefix token
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [prefix], tokenizer(continuation, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + continuation, **special)["input_ids"]
    head = tokenizer(context, **special)["input_ids"]
    return head, whole[len(head):]


def _special_kwargs(tokenizer, text: str) -> dict:
    """The tokenizer's own default, except when the text already starts with its BOS (a chat template)."""
    bos = tokenizer.bos_token
    return {"add_special_tokens": False} if bos and text.startswith(bos) else {}


def _batches(order: list[int], batch_size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def loglikelihoods(model, pairs: Sequence[tuple[list[int], list[int]]], *, batch_size: int = 16,
                   pad_id: int = 0, cancel=None) -> Iterator[tuple[int, list[tuple[int, float]]]]:
    """Yield (pairs done, [(index, summed log-probability of the continuation)]) batch by batch.
    Longest first, so a batch that does not fit in memory fails at once, not at the end."""
    device = next(model.parameters()).device
    limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
    rows = []
    for context, continuation in pairs:
        if not continuation:
            raise ValueError("an empty continuation has no likelihood to score")
        whole = (context + continuation)[-(limit + 1):]  # left-truncated, as lm-eval does
        rows.append((whole[:-1], whole[-len(continuation):]))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    done = 0
    for batch in _batches(order, batch_size):
        if cancel is not None:
            cancel.raise_if_cancelled()
        width = max(len(rows[i][0]) for i in batch)
        keep = max(len(rows[i][1]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            inputs = rows[i][0]
            ids[row, width - len(inputs):] = torch.tensor(inputs)
            mask[row, width - len(inputs):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits[:, -keep:].float(), dim=-1)
        out = []
        for row, i in enumerate(batch):
            target = rows[i][1]
            part = logprobs[row, keep - len(target):]
            picked = part.gather(-1, torch.tensor(target, device=device)[:, None])
            out.append((i, float(picked.sum())))
        done += len(batch)
        yield done, out
