"""The Merge tab end to end: models in through the panel, every method, plots, cancel, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from fusion_gui.engine.methods import registry  # noqa: E402
from fusion_gui.engine.synthetic_models import build_family  # noqa: E402
from fusion_gui.events import StepProgress  # noqa: E402
from fusion_gui.ui.panels import run_panel as run_panel_module  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, Gate, after_layers, after_progress, close_questions, config_dir, error_dialogs, models_for,
    no_leaked_windows, preflight, run_merge, save_screenshot, window,
)

pytestmark = pytest.mark.gui
LAYERS = 4  # the fixture models' layers


def load_causal_lm(folder):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("method_name", sorted(registry()))
def test_each_method_merges_loads_and_plots_every_layer(window, qtbot, llama_family, tmp_path,
                                                        error_dialogs, method_name):
    base, ft1, ft2 = map(str, llama_family)
    method = registry()[method_name]
    window.strategy_panel.set_method(method_name)
    assert window.strategy_panel.method_combo.currentData() == method_name
    if method.prepare is not None:  # a calibration text, and blocks short enough for the tiny models
        text = tmp_path / "calibration.txt"
        text.write_text("the cat sat on the mat and the dog ran far away\n" * 20)
        for name, value in (("calibration", str(text)), ("samples", 2), ("seq_length", 32)):
            window.strategy_panel.set_global(name, value)
    refs = models_for(method, base, ft1, ft2)
    assert window.models_panel.add_models(refs) == refs
    assert window.models_panel.problems() == {}
    if method.base != "none":
        assert window.document.state.base_model == base
    assert preflight(qtbot, window) is not None, window.run_panel.preflight_label.text()
    if method.prepare is not None:
        assert "Fisher" in window.run_panel.preflight_label.text()  # the dry run's note on the estimate
        stages = []  # what the progress line says while the Fisher estimate runs
        window.run_panel.event_received.connect(
            lambda event: stages.append(window.run_panel.progress_label.text()) if isinstance(event, StepProgress)
            else None)

    out = tmp_path / "merged"
    worker = run_merge(qtbot, window, out)
    assert error_dialogs == []
    result = window.run_panel.last_result
    assert result is not None and result.out_dir == str(out)
    assert window.run_panel.open_button.isVisible()

    model = load_causal_lm(out)
    assert model.config.num_hidden_layers == LAYERS
    window.merge_plots.flush()
    counts = window.merge_plots.layer_plot.point_counts()
    assert "result" in counts and set(counts.values()) == {LAYERS}, counts
    assert not worker.running
    if method.prepare is not None:
        assert any(text.startswith("Fisher of") and "backward layer" in text for text in stages), stages


def test_cancel_in_mid_run_leaves_no_output(window, qtbot, llama_family, tmp_path, monkeypatch):
    gate = Gate(after_progress(3))
    monkeypatch.setattr(run_panel_module, "merge_job", gate.wrap(run_panel_module.merge_job))
    window.models_panel.add_models([str(p) for p in llama_family])
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    out = out_parent / "merged"
    window.run_panel.set_output_dir(str(out))
    worker = window.run_panel.start_merge()
    started = time.perf_counter()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    gate_reached = time.perf_counter()
    assert window.run_panel.cancel_button.isEnabled()
    with qtbot.waitSignal(worker.cancelled, timeout=JOB_TIMEOUT_MS):
        qtbot.mouseClick(window.run_panel.cancel_button, Qt.MouseButton.LeftButton)
    assert not out.exists()
    assert list(out_parent.iterdir()) == []  # no temporary folder left either
    assert window.run_panel.run_button.isEnabled()
    assert "Cancelled" in window.run_panel.progress_label.text()


def test_shape_mismatch_shows_the_error_then_a_second_run_succeeds(window, qtbot, llama_family, tmp_path,
                                                                   error_dialogs):
    narrow = build_family(tmp_path / "narrow", "llama", n_finetunes=0, hidden=32)[0]
    base, ft1, _ = map(str, llama_family)
    window.strategy_panel.set_method("linear")
    window.models_panel.add_models([base, str(narrow)])
    problems = window.models_panel.problems()
    assert list(problems) == [str(narrow)] and "the base's is" in problems[str(narrow)]

    run_merge(qtbot, window, tmp_path / "first")
    assert len(error_dialogs) == 1
    summary, details = error_dialogs[0]
    assert "Shape mismatch" in summary and not summary.startswith("Unexpected")
    assert not (tmp_path / "first").exists()

    window.models_panel.remove_model(str(narrow))
    window.models_panel.add_models([ft1])
    assert window.models_panel.problems() == {}
    run_merge(qtbot, window, tmp_path / "second")
    assert len(error_dialogs) == 1
    assert load_causal_lm(tmp_path / "second").config.num_hidden_layers == LAYERS


def test_an_architecture_mismatch_is_flagged_on_the_spot(window, llama_family, gpt2_family):
    window.models_panel.add_models([str(gpt2_family[0]), str(llama_family[1])])
    problems = window.models_panel.problems()
    assert list(problems) == [str(llama_family[1])]
    assert "Architecture LlamaForCausalLM differs" in problems[str(llama_family[1])]
    row = window.models_panel.display_refs().index(str(llama_family[1]))
    assert window.models_panel.table.item(row, 7).text() == "incompatible"
    assert "llama-ft1: Architecture LlamaForCausalLM differs" in window.models_panel.problems_label.text()


@pytest.mark.screenshot
def test_heartbeat_during_a_merge_and_a_screenshot(window, qtbot, tmp_path, monkeypatch, error_dialogs):
    """The GUI thread keeps ticking while a merge runs; max and p99 lateness are reported, not asserted
    (timings belong in benchmarks/bench_gui_latency.py)."""
    family = build_family(tmp_path / "bigger", "llama", n_finetunes=2, layers=8, hidden=256,
                          max_shard_size="2MB")
    gate = Gate(after_layers(5))
    monkeypatch.setattr(run_panel_module, "merge_job", gate.wrap(run_panel_module.merge_job))
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([str(p) for p in family])
    window.run_panel.set_output_dir(str(tmp_path / "merged"))
    preflight(qtbot, window)

    interval_ms, ticks = 10, []
    timer = QTimer(interval=interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    worker = window.run_panel.start_merge()
    started = time.perf_counter()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    gate_reached = time.perf_counter()
    qtbot.wait(200)  # let the queued events and a throttled redraw land
    screenshot_start = time.perf_counter()
    window.merge_plots.flush()
    save_screenshot(window, "main_window.png")
    screenshot_end = time.perf_counter()
    gate.open()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    timer.stop()
    assert error_dialogs == []
    ticks = np.asarray(ticks)
    gaps = np.diff(ticks)
    during_screenshot = (ticks[1:] >= screenshot_start) & (ticks[:-1] <= screenshot_end)
    late = np.maximum(gaps[~during_screenshot] * 1000 - interval_ms, 0)
    print(f"\nGUI heartbeat during a merge: {len(late)} ticks, max late {late.max():.1f} ms, "
          f"p99 {np.percentile(late, 99):.1f} ms")
    print(f"ticks while five layers merged: {sum(started <= t <= gate_reached for t in ticks)}")
    # the event loop ran while the worker merged five layers: the merge is off the GUI thread
    assert sum(started <= t <= gate_reached for t in ticks) >= 3


def test_preflight_says_what_will_be_written_and_warns_about_memory(window, qtbot, llama_family, tmp_path,
                                                                    monkeypatch):
    from fusion_gui.ui.panels import preflight as run_panel  # where the pre-flight reads free memory

    window.models_panel.add_models([str(p) for p in llama_family])
    window.run_panel.set_output_dir(str(tmp_path / "out"))
    summary = preflight(qtbot, window)
    assert summary is not None and summary.num_layers == LAYERS
    assert f"Writes {summary.tensors} tensors" in window.run_panel.preflight_label.text()
    assert "free RAM" not in window.run_panel.preflight_label.text()
    monkeypatch.setattr(run_panel, "free_memory", lambda device: (1000, 500))
    preflight(qtbot, window)
    text = window.run_panel.preflight_label.text()
    assert "free RAM" in text and "free GPU memory" in text

    (tmp_path / "out").mkdir()
    assert preflight(qtbot, window) is not None  # the plan is still shown; the app asks before replacing
    assert "already exists" in window.run_panel.preflight_label.text()
    assert "choose a new one" in window.run_panel.preflight_label.text()
    window.run_panel.overwrite_box.setChecked(True)
    assert preflight(qtbot, window) is not None
    assert "Run asks before replacing it" in window.run_panel.preflight_label.text()


def test_run_without_an_output_folder_says_so(window, llama_family, error_dialogs):
    window.models_panel.add_models([str(p) for p in llama_family])
    assert window.run_panel.start_merge() is None
    assert error_dialogs and "output folder" in error_dialogs[0][0]
    assert window.run_panel.run_button.isEnabled()


def test_closing_the_window_mid_run_cancels_and_leaves_nothing(window, qtbot, llama_family, tmp_path,
                                                                monkeypatch):
    gate = Gate(after_progress(2))
    monkeypatch.setattr(run_panel_module, "merge_job", gate.wrap(run_panel_module.merge_job))
    window.models_panel.add_models([str(p) for p in llama_family])
    out_parent = tmp_path / "outputs"
    out_parent.mkdir()
    window.run_panel.set_output_dir(str(out_parent / "merged"))
    worker = window.run_panel.start_merge()
    started = time.perf_counter()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    gate_reached = time.perf_counter()
    window.close()
    assert worker.wait(0)  # the thread has ended
    assert list(out_parent.iterdir()) == []
