"""The Distill view (pytest-qt, offscreen): a short run fills the curves, pause holds, cancel writes nothing."""

from __future__ import annotations

import csv
import math

import pytest

pytest.importorskip("pytestqt")
import torch  # noqa: E402

from fusion_gui.events import EvalStep, Log, TrainStep  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot, window,
)
from fixtures.word_corpus import word_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An (untrained) teacher and a narrower student sharing one tokenizer, and a small corpus."""
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    root = tmp_path_factory.mktemp("ui-distill")
    (root / "corpus.txt").write_text(word_corpus(120))
    teacher = build_model(tiny_config("llama", layers=1, hidden=32, vocab=128), seed=0)
    save_model(teacher, root / "teacher")
    from transformers import AutoTokenizer

    ids = torch.tensor(AutoTokenizer.from_pretrained(root / "teacher")(
        (root / "corpus.txt").read_text().replace("\n", " "))["input_ids"])
    blocks = ids[: len(ids) // 16 * 16].view(-1, 16)
    opt = torch.optim.AdamW(teacher.parameters(), lr=1e-2)  # a teacher that knows the corpus a little
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        batch = blocks[torch.randint(len(blocks), (16,), generator=gen)]
        teacher(input_ids=batch, labels=batch).loss.backward()
        opt.step(), opt.zero_grad()
    save_model(teacher.eval(), root / "teacher")
    save_model(build_model(tiny_config("llama", layers=1, hidden=16, vocab=128), seed=1), root / "student")
    return root


def _fill(panel, tiny, out, steps: int, eval_every: int = 0) -> None:
    panel.set_inputs(str(tiny / "teacher"), str(tiny / "student"), str(tiny / "corpus.txt"), str(out))
    panel.loss_rows["forward_kl"].check.setChecked(True)
    panel.loss_rows["taid"].check.setChecked(True)  # t goes to its own plot
    panel.loss_rows["ce"].check.setChecked(True)
    panel.loss_rows["ce"].weight.setValue(0.1)
    panel.max_steps.setValue(steps)
    panel.batch_size.setValue(4)
    panel.seq_length.setValue(16)
    panel.learning_rate.setValue(3e-3)
    panel.eval_every.setValue(eval_every)
    panel.device.setCurrentText("cpu")


@pytest.mark.screenshot
def test_distill_view_plots_every_logged_step(window, qtbot, tiny, tmp_path, error_dialogs):  # noqa: F811
    panel = window.distill_panel
    window.tabs.setCurrentWidget(panel)
    _fill(panel, tiny, tmp_path / "out", steps=10, eval_every=5)
    events = []
    worker = panel.start()
    assert worker is not None, error_dialogs
    worker.event.connect(events.append)
    assert not panel.start_button.isEnabled() and panel.pause_button.isEnabled()
    assert panel.start() is None  # one run at a time
    panel.save_now_button.click()  # a checkpoint after the current step, kept beside the output
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert not error_dialogs
    saved = [e for e in events if isinstance(e, Log) and e.message.startswith("Saved checkpoint")]
    assert len(saved) == 1 and len(list((tmp_path / "out-checkpoints").glob("checkpoint-*"))) == 1
    assert not panel.save_now_button.isEnabled()
    train = [e for e in events if isinstance(e, TrainStep)]
    evals = [e for e in events if isinstance(e, EvalStep)]
    assert [e.step for e in train] == list(range(1, 11)) and [e.step for e in evals] == [5, 10]
    counts = panel.plot.point_counts()
    for term in ("total", "forward_kl", "taid", "ce"):
        assert counts[f"train/{term}"] == len(train)
        assert counts[f"eval/{term}"] == len(evals)
    assert counts["lr"] == counts["taid_t"] == len(train)
    assert counts["eval/ce_teacher"] == len(evals)
    x, y = panel.plot.curve_data("train/total")
    assert list(x) == list(range(1, 11)) and y[-1] == pytest.approx(train[-1].losses["total"])
    # the result: both perplexities side by side, the folder written and openable
    result = panel.last_result
    assert result is not None and (tmp_path / "out" / "config.json").is_file()
    text = panel.result_label.text()
    assert "student" in text and "teacher" in text
    assert f"{math.exp(result.final_eval['ce_teacher']):.4g}" in text  # the teacher's perplexity
    assert f"{math.exp(result.final_eval['ce_student']):.4g}" in text
    assert panel.open_button.isEnabled() and panel.start_button.isEnabled() and not panel.pause_button.isEnabled()
    panel.plot.save_csv(tmp_path / "losses.csv")
    rows = list(csv.DictReader(open(tmp_path / "losses.csv")))
    assert [r["split"] for r in rows].count("train") == 10 and [r["split"] for r in rows].count("eval") == 2
    panel.plot.save_png(tmp_path / "losses.png")
    assert (tmp_path / "losses.png").stat().st_size > 1000
    window.tabs.setCurrentWidget(panel)
    qtbot.wait(50)
    save_screenshot(window, "distill.png")


def test_pause_holds_training_and_cancel_writes_nothing(qtbot, tiny, tmp_path, no_leaked_windows,  # noqa: F811
                                                         error_dialogs):  # noqa: F811
    from fusion_gui.ui.panels.distill_panel import DistillPanel

    panel = DistillPanel()
    qtbot.addWidget(panel)
    _fill(panel, tiny, tmp_path / "out", steps=500)
    logs: list[str] = []
    worker = panel.start()
    assert worker is not None, error_dialogs
    worker.event.connect(lambda e: logs.append(e.message) if isinstance(e, Log) else None)
    qtbot.waitUntil(lambda: panel.train_steps >= 1, timeout=JOB_TIMEOUT_MS)
    panel.pause_button.click()
    assert panel.pause_event.is_set() and panel.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: any(m.startswith("Paused after step") for m in logs), timeout=JOB_TIMEOUT_MS)
    held = panel.train_steps
    assert logs[-1] == f"Paused after step {held}."
    qtbot.wait(600)  # paused: no step comes in, and the window keeps answering
    assert panel.train_steps == held and worker.running
    panel.pause_button.click()  # resume
    assert not panel.pause_event.is_set() and panel.pause_button.text() == "Pause"
    qtbot.waitUntil(lambda: panel.train_steps >= held + 2, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignal(worker.cancelled, timeout=JOB_TIMEOUT_MS):
        panel.cancel_button.click()
    qtbot.waitUntil(lambda: not worker.running, timeout=JOB_TIMEOUT_MS)
    assert panel.plot.point_counts()["train/total"] == panel.train_steps < 500
    assert list(tmp_path.iterdir()) == []  # no output folder, no temp folder
    assert "nothing was written" in panel.status_label.text() and not error_dialogs


def test_bad_form_is_refused_before_a_job_starts(qtbot, tiny, tmp_path, no_leaked_windows, error_dialogs):  # noqa: F811
    from fusion_gui.ui.panels.distill_panel import DistillPanel

    panel = DistillPanel()
    qtbot.addWidget(panel)
    _fill(panel, tiny, tmp_path / "out", steps=5)
    for row in panel.loss_rows.values():
        row.check.setChecked(False)
    assert panel.start() is None and "losses" in error_dialogs[-1][0]
    panel.loss_rows["jsd"].check.setChecked(True)
    assert panel.config_dict()["losses"] == {"jsd": {"weight": 1.0, "beta": 0.5}}
    (tmp_path / "out").mkdir()
    assert panel.start() is None and "already exists" in error_dialogs[-1][0]
