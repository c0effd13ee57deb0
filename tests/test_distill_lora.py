"""A student trained as a LoRA and merged at the end; the pre-flight's data counts and memory estimate."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from fusion_gui.engine.distill import config_from_dict, distill
from fusion_gui.engine.distill.preflight import describe, estimate_memory, plan_distill
from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config
from fusion_gui.events import Log
from helpers import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    save_model(build_model(tiny_config("llama", layers=2, hidden=48, vocab=128), seed=0), root / "teacher")
    save_model(build_model(tiny_config("llama", layers=2, hidden=32, vocab=128), seed=1), root / "student")
    (root / "chat.jsonl").write_text("".join(json.dumps({"prompt": f"say {i}:", "completion": f" {i} {i}"}) + "\n"
                                             for i in range(60)))
    return root


def _config(root, **training):
    return config_from_dict({"teacher": str(root / "teacher"), "student": str(root / "student"),
                             "data": str(root / "chat.jsonl"), "losses": {"forward_kl": 1.0},
                             "training": {"max_steps": 3, "batch_size": 4, "seq_length": 32, "device": "cpu",
                                          "learning_rate": 1e-2} | training})


def _weights(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out |= load_file(f)
    return out


def test_lora_student_is_merged_into_a_whole_model(models, tmp_path):
    events, result = run_job(distill(_config(models, lora_rank=4, lora_alpha=8), tmp_path / "out", smoke=False))
    assert any("LoRA of rank 4" in e.message for e in events if isinstance(e, Log))
    before, after = _weights(models / "student"), _weights(tmp_path / "out")
    assert after.keys() == before.keys()  # a plain model: no adapter, no lora_ tensors
    assert not (tmp_path / "out" / "adapter_config.json").exists()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("q_proj" in k for k in changed)  # the adapters' update went into the linear layers
    assert "lm_head.weight" not in changed and "model.embed_tokens.weight" not in changed


def test_preflight_counts_loss_tokens_and_estimates_memory(models):
    gen = plan_distill(_config(models))
    try:
        next(gen)
    except StopIteration as stop:
        plan = stop.value
    total = (plan.train_blocks + plan.eval_blocks) * 31
    assert 0 < plan.loss_tokens < total / 2  # completions only, not the prompts
    text, _ = describe(plan)
    assert f"{plan.loss_tokens:,} of {total:,} predicted tokens carry loss" in text
    full = estimate_memory(_config(models, loss_chunk=0), 131072, False)
    chunked = estimate_memory(_config(models, loss_chunk=16), 131072, False)
    assert chunked.logits < full.logits and chunked.teacher == full.teacher
    lora = estimate_memory(_config(models, lora_rank=2), 128, False)
    assert lora.optimizer < estimate_memory(_config(models), 128, False).optimizer
