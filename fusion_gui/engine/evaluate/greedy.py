"""Greedy completions of many prompts at once: one left-padded batch, a KV cache, stopping when every row
has ended. It takes the steps `model.generate(do_sample=False)` takes (position ids from the attention mask,
a cache, the last position's logits only) without its per-call setup, which on the tiny demo models costs
more than the forward passes themselves. tests/test_greedy.py checks its answers against generate's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Prompts:
    """Prompts tokenized and left-padded once, to be completed by any model sharing the tokenizer
    (a search scores every trial on the same prompts)."""

    ids: torch.Tensor  # (rows, width), left-padded with pad_id
    mask: torch.Tensor  # 1 on prompt tokens, 0 on padding
    pad_id: int
    eos_id: int | None


def encode_prompts(tokenizer, prompts: list[str], pad_id: int) -> Prompts:
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        if e:
            ids[row, width - len(e):] = torch.tensor(e)
            mask[row, width - len(e):] = 1
    eos = tokenizer.eos_token_id
    return Prompts(ids, mask, pad_id, eos if isinstance(eos, int) else None)


@torch.no_grad()
def greedy_ids(model, prompts: Prompts, max_new_tokens: int, cancel=None) -> list[list[int]]:
    """Each prompt's greedy continuation token ids (max_new_tokens of them; after an end-of-sequence token
    the row holds pad_id, as generate pads finished rows)."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids, mask = prompts.ids.to(device), prompts.mask.to(device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate derives them
    cache = DynamicCache(config=model.config)
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=device)
    steps = []
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                   **keep).logits
    for step in range(max_new_tokens):
        if cancel is not None:
            cancel.raise_if_cancelled()
        token = logits[:, -1].argmax(-1).masked_fill(done, prompts.pad_id)
        steps.append(token)
        if prompts.eos_id is not None:
            done |= token == prompts.eos_id
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        positions = positions[:, -1:] + 1
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True, **keep).logits
    return torch.stack(steps, dim=1).tolist()
