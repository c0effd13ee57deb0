"""The Distill view's new options and its pre-flight line (pytest-qt, offscreen)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pytestqt")

from ui_helpers import error_dialogs, no_leaked_windows  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    root = tmp_path_factory.mktemp("distill-view")
    for name, seed in (("teacher", 0), ("student", 1)):
        save_model(build_model(tiny_config("llama", layers=1, hidden=16, vocab=128), seed=seed), root / name)
    (root / "qa.jsonl").write_text("".join(json.dumps({"prompt": f"question {i}?", "completion": " yes"}) + "\n"
                                           for i in range(40)))
    return root


def test_preflight_shows_loss_tokens_and_memory_and_options_reach_the_config(qtbot, tiny, no_leaked_windows,  # noqa: F811
                                                                             error_dialogs):  # noqa: F811
    from fusion_gui.ui.panels.distill_panel import DistillPanel

    panel = DistillPanel()
    qtbot.addWidget(panel)
    panel.seq_length.setValue(16)
    panel.lora_rank.setValue(8)
    panel.loss_chunk.setValue(64)
    panel.set_inputs(str(tiny / "teacher"), str(tiny / "student"), str(tiny / "qa.jsonl"))
    qtbot.waitUntil(lambda: panel.preflight.plan is not None, timeout=30_000)
    plan = panel.preflight.plan
    text = panel.preflight.text()
    assert f"{plan.loss_tokens:,} of" in text and "carry loss" in text and "Estimated peak memory" in text
    assert 0 < plan.loss_tokens < (plan.train_blocks + plan.eval_blocks) * 15 / 2  # " yes" + EOS of each row
    training = panel.state.config["training"]
    assert training["lora_rank"] == 8 and training["loss_chunk"] == 64
    panel.set_inputs(data=str(tiny / "missing.jsonl"))
    qtbot.waitUntil(lambda: panel.preflight.plan is None, timeout=30_000)
    assert "does not exist" in panel.preflight.text() and panel.preflight.warnings
