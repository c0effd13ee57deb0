"""Tiny models that have learned the smoke check's text, so a broken copy shows in perplexity.

Random tiny models score near chance whatever is done to them; these score far better, so
shuffling an embedding or swapping the tokenizer makes a real difference."""

from __future__ import annotations

from pathlib import Path

import torch

from fusion_gui.engine.evaluate.smoke import SMOKE_TEXT
from fusion_gui.engine.synthetic_models import build_model, perturb, save_model, tiny_config


def trained_tiny(path: Path, steps: int = 60, seed: int = 0) -> Path:
    """A 2-layer Llama (character tokenizer) trained a few seconds on SMOKE_TEXT, saved at path."""
    from transformers import AutoTokenizer

    model = build_model(tiny_config("llama", layers=2, hidden=64), seed=seed)
    save_model(model, path)  # writes the tokenizer the training needs
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    ids = torch.tensor(tokenizer(SMOKE_TEXT, add_special_tokens=False)["input_ids"])
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 64, (8,), generator=gen)
        batch = torch.stack([ids[s:s + 64] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_model(model, path)
    return path


def perturbed_copy(source: Path, path: Path, seed: int, scale: float = 0.01) -> Path:
    from transformers import AutoModelForCausalLM

    model = perturb(AutoModelForCausalLM.from_pretrained(str(source)), seed=seed, scale=scale)
    return save_model(model, path)
