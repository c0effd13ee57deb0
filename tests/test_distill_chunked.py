"""The chunked distillation loss equals the full-logits loss, in value and in gradients."""

from __future__ import annotations

import pytest
import torch

from fusion_gui.engine.distill.batch_loss import LossSetup, batch_loss, can_chunk
from fusion_gui.engine.distill.config import LossSpec
from fusion_gui.engine.synthetic_models import build_model, tiny_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECS = (LossSpec("forward_kl", 1.0), LossSpec("jsd", 0.5, {"beta": 0.3}), LossSpec("taid", 0.7),
         LossSpec("ce", 0.2), LossSpec("hidden_cosine", 0.1))


@pytest.fixture(scope="module")
def models():
    cfg = tiny_config("llama", layers=2, hidden=32, vocab=96)
    return build_model(cfg, seed=0), build_model(cfg, seed=1).eval()


def _grads(model, teacher, setup, inputs, heads):
    model.zero_grad()
    total, record, _ = batch_loss(setup, model, teacher, inputs, 0.5, False, None, heads)
    total.backward()
    return total.detach(), record, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("masked", [True, False], ids=["chat", "plain"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_loss_and_gradients_equal_the_full_logits(models, chunk, masked):
    student, teacher = models
    ids = torch.randint(3, 90, (3, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    if masked:
        labels[0, :5] = -100  # a prompt: no loss there
        labels[2, 7:] = -100
    inputs = {"input_ids": ids, "labels": labels}
    full = _grads(student, teacher, LossSetup(SPECS, 2.0, 90, 0), inputs, None)
    heads = can_chunk(student, teacher)
    assert heads is not None
    part = _grads(student, teacher, LossSetup(SPECS, 2.0, 90, chunk), inputs, heads)
    assert torch.allclose(full[0], part[0], atol=1e-5)
    for key in full[1]:
        assert part[1][key] == pytest.approx(full[1][key], abs=1e-5), key
    assert full[2].keys() == part[2].keys() and "lm_head.weight" in full[2]
    for name, grad in full[2].items():
        assert torch.allclose(grad, part[2][name], atol=1e-5, rtol=1e-4), name


def test_masked_positions_do_not_count(models):
    student, teacher = models
    ids = torch.randint(3, 90, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :6] = -100
    setup = LossSetup((LossSpec("forward_kl", 1.0),), 1.0, 90, 4)
    heads = can_chunk(student, teacher)
    masked = batch_loss(setup, student, teacher, {"input_ids": ids, "labels": labels}, None, False, None, heads)[0]
    changed = ids.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 90  # the targets that count change: so does the loss
    assert not torch.allclose(masked, batch_loss(setup, student, teacher, {"input_ids": changed, "labels": labels},
                                                 None, False, None, heads)[0])
