"""Cancel in the middle of every long job of the app: no dialog, nothing left on disk, the view usable, and
the next job of the same kind runs to the end. The jobs pause at a gate so the cancel lands mid-run."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from fusion_gui.engine.evaluate import demo as demo_module  # noqa: E402
from fusion_gui.engine.evaluate.scoring import evaluate  # noqa: E402
from fusion_gui.events import EvalRow, LoraModuleError, StepProgress, TrainStep  # noqa: E402
from fusion_gui.ui.dialogs import extract_lora_dialog  # noqa: E402
from fusion_gui.ui.panels import compare_panel, distill_panel, eval_panel, run_panel, start_panel  # noqa: E402
from failure_helpers import perplexity_only, tree  # noqa: E402
from test_demo_eval import SMALL  # noqa: E402
from test_ui_distill import _fill, tiny  # noqa: E402,F401
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, Gate, after_progress, close_questions, config_dir, error_dialogs, no_leaked_windows, run_merge,
    window,
)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def after(kind, count: int = 1):
    seen = []

    def check(event) -> bool:
        if isinstance(event, kind):
            seen.append(event)
        return len(seen) >= count
    return check


def cancel_at_gate(qtbot, gate: Gate, worker, cancel_button) -> None:
    """Wait until the job pauses mid-run, press Cancel, and wait until it has stopped."""
    assert worker is not None
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    assert cancel_button.isEnabled()
    with qtbot.waitSignals([worker.cancelled, worker.done], timeout=JOB_TIMEOUT_MS, order="strict"):
        cancel_button.click()


def wait_done(qtbot, worker) -> None:
    assert worker is not None
    qtbot.waitUntil(lambda: not worker.running, timeout=JOB_TIMEOUT_MS)


def test_cancel_a_merge(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs):
    gate = Gate(after_progress(3))
    monkeypatch.setattr(run_panel, "merge_job", gate.wrap(run_panel.merge_job))
    window.models_panel.add_models([str(p) for p in llama_family])
    parent = tmp_path / "outputs"
    parent.mkdir()
    window.run_panel.set_output_dir(str(parent / "merged"))
    cancel_at_gate(qtbot, gate, window.run_panel.start_merge(), window.run_panel.cancel_button)
    assert tree(parent) == [] and error_dialogs == []
    assert window.run_panel.run_button.isEnabled() and "Cancelled" in window.run_panel.progress_label.text()
    gate.open()
    run_merge(qtbot, window, parent / "merged")
    assert window.run_panel.last_result is not None and (parent / "merged" / "config.json").is_file()


def test_cancel_a_compare(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs):
    gate = Gate(after_progress(3))
    monkeypatch.setattr(compare_panel, "diff_job", gate.wrap(compare_panel.diff_job))
    base, ft1, ft2 = map(str, llama_family)
    panel = window.compare_panel
    panel.set_models(ft1, ft2, base)
    before = tree(llama_family[0].parent)
    cancel_at_gate(qtbot, gate, panel.start_compare(), panel.cancel_button)
    assert error_dialogs == [] and panel.last_result is None and tree(llama_family[0].parent) == before
    assert panel.compare_button.isEnabled() and "Cancelled" in panel.status_label.text()
    gate.open()
    wait_done(qtbot, panel.start_compare())
    assert panel.last_result is not None and error_dialogs == []


def test_cancel_an_evaluation(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs):
    gate = Gate(after(EvalRow))
    gated = gate.wrap(lambda refs, kwargs, token: evaluate(refs, cancel=token, **kwargs))
    monkeypatch.setattr(eval_panel, "evaluate", lambda refs, cancel=None, **kwargs: gated(refs, kwargs, cancel))
    panel = window.eval_panel
    perplexity_only(panel, tmp_path)
    panel.set_models([str(p) for p in llama_family[:2]])
    cancel_at_gate(qtbot, gate, panel.start(), panel.cancel_button)
    assert error_dialogs == [] and tree(tmp_path) == ["text.txt"]
    assert panel.run_button.isEnabled() and "Cancelled" in panel.status_label.text()
    gate.open()
    wait_done(qtbot, panel.start())
    assert panel.table.rowCount() == 2 and error_dialogs == []


def test_cancel_a_distillation(window, qtbot, tiny, tmp_path, monkeypatch, error_dialogs):  # noqa: F811
    gate = Gate(after(TrainStep, 2))
    job = distill_panel.distill_job
    gated = gate.wrap(lambda config, out_dir, pause, save_now, token: job(config, out_dir, pause, token, save_now))
    monkeypatch.setattr(distill_panel, "distill_job",
                        lambda config, out_dir, pause, token, save_now=None: gated(config, out_dir, pause, save_now,
                                                                                   token))
    panel = window.distill_panel
    out = tmp_path / "student-out"
    _fill(panel, tiny, out, steps=500)  # training goes on while the gate holds the events: it must not end
    cancel_at_gate(qtbot, gate, panel.start(), panel.cancel_button)
    assert error_dialogs == [] and tree(tmp_path) == []  # no output, partial or checkpoint folder
    assert panel.start_button.isEnabled() and not panel.pause_button.isEnabled()
    gate.open()
    panel.max_steps.setValue(4)
    wait_done(qtbot, panel.start())
    assert panel.last_result is not None and (out / "config.json").is_file() and error_dialogs == []


def test_cancel_a_lora_extraction(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs):
    gate = Gate(after(LoraModuleError, 2))
    monkeypatch.setattr(extract_lora_dialog, "extract_job", gate.wrap(extract_lora_dialog.extract_job))
    base, ft1, _ = llama_family
    dialog = window.open_extract_lora()
    dialog.set_inputs(str(ft1), str(base), str(tmp_path / "adapter"))
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    cancel_at_gate(qtbot, gate, dialog.start(), dialog.cancel_button)
    assert error_dialogs == [] and tree(tmp_path) == [] and dialog.error_label.isHidden()
    assert dialog.run_button.isEnabled() and dialog.output.isEnabled()
    gate.open()
    wait_done(qtbot, dialog.start())
    assert dialog.result is not None and (tmp_path / "adapter" / "adapter_config.json").is_file()
    dialog.close()


def test_cancel_the_demo_build(qtbot, tmp_path, monkeypatch, no_leaked_windows, error_dialogs):
    gate = Gate(after(StepProgress, 2))
    gated = gate.wrap(lambda root, token: demo_module.build_demo(root, SMALL, cancel=token))
    monkeypatch.setattr(start_panel, "build_demo", lambda root, cancel=None: gated(root, cancel))
    panel = start_panel.StartPanel(root=tmp_path / "demo-models")
    qtbot.addWidget(panel)
    worker = panel.start_demo()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignals([worker.cancelled, worker.done], timeout=JOB_TIMEOUT_MS, order="strict"):
        panel.runner.cancel()  # the start screen has no Cancel button: closing the window cancels
    assert error_dialogs == [] and tree(tmp_path) == []
    assert panel.demo_button.isEnabled()
    gate.open()
    with qtbot.waitSignal(panel.demo_ready, timeout=JOB_TIMEOUT_MS):
        panel.start_demo()
    assert "built in" in panel.status_label.text()
