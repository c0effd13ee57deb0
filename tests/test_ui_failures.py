"""Every job of the app fails in its middle as it would for real (the disk fills, a file cannot be read,
memory runs out, a bug): the user reads one sentence naming what is wrong, nothing is left on disk, the
view works again, and the next job of the same kind succeeds. Cancels are in test_ui_cancels.py."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
import transformers  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from fusion_gui.engine.errors import InputError  # noqa: E402
from fusion_gui.engine.evaluate import demo as demo_module  # noqa: E402
from fusion_gui.engine.evaluate import scoring  # noqa: E402
from fusion_gui.engine.io import weight_files, writer  # noqa: E402
from fusion_gui.engine.io.reader import ModelReader  # noqa: E402
from fusion_gui.engine.merge import run as merge_run  # noqa: E402
from fusion_gui.engine.merge import vocab_compare  # noqa: E402
from fusion_gui.events import EvalRow, LoraModuleError, Progress, StepProgress, TrainStep  # noqa: E402
from fusion_gui.ui.panels import start_panel  # noqa: E402
from failure_helpers import (  # noqa: E402
    CANNOT_READ, DISK_FULL, NO_MEMORY, assert_one_sentence, fail_once, perplexity_only, tree, watch_events,
)
from test_demo_eval import SMALL  # noqa: E402
from test_ui_distill import _fill, tiny  # noqa: E402,F401 - the module's teacher, student and corpus
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, close_questions, config_dir, error_dialogs, no_leaked_windows, preflight, run_merge, window,
)

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


def wait_done(qtbot, worker) -> None:
    assert worker is not None
    qtbot.waitUntil(lambda: not worker.running, timeout=JOB_TIMEOUT_MS)


# --- merge ------------------------------------------------------------------------------------------

MERGE_FAILURES = {  # what fails, and words the sentence must name
    "disk full": (writer, "_pwrite", 8, DISK_FULL, ("Not enough disk space", "outputs"), False),
    "unreadable input": (ModelReader, "_read_at", 12, CANNOT_READ, ("Reading tensor", "Input/output error"), False),
    "out of memory": (merge_run, "_compute", 5, NO_MEMORY, ("Out of memory",), False),
    "a bug": (merge_run, "_compute", 5, ZeroDivisionError("division by zero"), ("ZeroDivisionError",), True),
}


@pytest.mark.parametrize("failure", sorted(MERGE_FAILURES))
def test_merge_fails_mid_run(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs, failure):
    owner, name, call, error, words, bug = MERGE_FAILURES[failure]
    injected = fail_once(getattr(owner, name), call, error)
    monkeypatch.setattr(owner, name, injected)
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([str(p) for p in llama_family])
    parent = tmp_path / "outputs"
    parent.mkdir()
    events = watch_events(window.run_panel.runner)

    run_merge(qtbot, window, parent / "merged")
    assert injected.failed and any(isinstance(e, Progress) for e in events)  # it failed in the middle
    assert len(error_dialogs) == 1
    assert_one_sentence(error_dialogs[0][0], *words, bug=bug)
    assert tree(parent) == []  # no output folder, no hidden partial folder
    panel = window.run_panel
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.progress_label.text().startswith("Failed") and panel.last_result is None

    run_merge(qtbot, window, parent / "merged")  # the same merge again: it succeeds
    assert len(error_dialogs) == 1 and panel.last_result is not None
    assert tree(parent) == ["merged"] + [f"merged/{f}" for f in tree(parent / "merged")]
    assert (parent / "merged" / "config.json").is_file()


# --- pre-flight -------------------------------------------------------------------------------------

def test_preflight_that_cannot_read_a_model_says_so_inline(window, qtbot, llama_family, tmp_path, monkeypatch,
                                                           error_dialogs):
    base, ft1, ft2 = map(str, llama_family)
    window.models_panel.add_models([base, ft1, ft2])
    window.run_panel.set_output_dir(str(tmp_path / "merged"))
    real_open = open
    unreadable = []

    def failing_open(path, *args, **kwargs):  # the last model's shards cannot be read, once each
        if str(path).startswith(ft2) and str(path) not in unreadable:
            unreadable.append(str(path))
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(weight_files, "open", failing_open, raising=False)
    before = tree(tmp_path)
    assert preflight(qtbot, window) is None
    text = window.run_panel.preflight_label.text()
    assert text.startswith("<span") and "Cannot run yet: " in text, text
    sentence = text.split("Cannot run yet: ", 1)[1].removesuffix("</span>")
    assert_one_sentence(sentence, "Permission denied", "ft2")
    assert error_dialogs == []  # inline, not a dialog in the way
    assert tree(tmp_path) == before
    assert window.run_panel.run_button.isEnabled()

    monkeypatch.setattr(weight_files, "open", real_open, raising=False)
    assert preflight(qtbot, window) is not None  # the next one plans
    assert "Writes" in window.run_panel.preflight_label.text()


# --- compare ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["unreadable input", "out of memory"])
def test_compare_fails_mid_run(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs, failure):
    from fusion_gui.engine.inspect import diff as diff_module

    if failure == "unreadable input":
        injected, words = fail_once(ModelReader._read_at, 20, CANNOT_READ), ("Reading tensor", "Input/output")
        monkeypatch.setattr(ModelReader, "_read_at", injected)
    else:
        injected, words = fail_once(diff_module.measure_tensor, 6, NO_MEMORY), ("Out of memory",)
        monkeypatch.setattr(diff_module, "measure_tensor", injected)
    base, ft1, ft2 = map(str, llama_family)
    panel = window.compare_panel
    panel.set_models(ft1, ft2, base)
    events = watch_events(panel.runner)
    before = tree(llama_family[0].parent)
    wait_done(qtbot, panel.start_compare())
    assert injected.failed and any(isinstance(e, Progress) for e in events)
    assert len(error_dialogs) == 1
    assert_one_sentence(error_dialogs[0][0], *words)
    assert tree(llama_family[0].parent) == before and tree(tmp_path) == []
    assert panel.compare_button.isEnabled() and not panel.cancel_button.isEnabled()

    wait_done(qtbot, panel.start_compare())
    assert len(error_dialogs) == 1 and panel.last_result is not None
    assert panel.status_label.text().startswith("Compared")


# --- evaluate ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["unreadable model", "out of memory"])
def test_evaluate_fails_mid_run(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs, failure):
    if failure == "unreadable model":  # the second model's weights cannot be read
        load = transformers.AutoModelForCausalLM.from_pretrained
        injected = fail_once(lambda *a, **k: load(*a, **k), 2, CANNOT_READ)
        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", injected)
        words = ("Cannot load", "ft1", "Input/output error")
    else:
        injected, words = fail_once(scoring._window_nll, 2, NO_MEMORY), ("Out of memory",)
        monkeypatch.setattr(scoring, "_window_nll", injected)
    panel = window.eval_panel
    perplexity_only(panel, tmp_path)
    base, ft1, _ = map(str, llama_family)
    panel.set_models([base, ft1])
    events = watch_events(panel.runner)
    wait_done(qtbot, panel.start())
    assert injected.failed and any(isinstance(e, (EvalRow, StepProgress)) for e in events)
    assert len(error_dialogs) == 1
    assert_one_sentence(error_dialogs[0][0], *words)
    assert tree(tmp_path) == ["text.txt"]
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()

    wait_done(qtbot, panel.start())
    assert len(error_dialogs) == 1
    assert panel.table.rowCount() == 2 and panel.save_button.isEnabled()


# --- distill ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["disk full", "out of memory"])
def test_distill_fails_mid_run(window, qtbot, tiny, tmp_path, monkeypatch, error_dialogs, failure):  # noqa: F811
    from fusion_gui.engine.distill import losses

    if failure == "disk full":  # after training, when the student is saved
        save = transformers.PreTrainedModel.save_pretrained
        injected, words = fail_once(save, 1, DISK_FULL), ("Not enough disk space", "the student")
        monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", injected)
    else:  # in the third training step
        injected, words = fail_once(losses.forward_kl, 3, NO_MEMORY), ("Out of memory",)
        monkeypatch.setattr(losses, "forward_kl", injected)
    panel = window.distill_panel
    out = tmp_path / "student-out"
    _fill(panel, tiny, out, steps=4)
    events = watch_events(panel.runner)
    wait_done(qtbot, panel.start())
    assert injected.failed and any(isinstance(e, TrainStep) for e in events)
    assert len(error_dialogs) == 1
    assert_one_sentence(error_dialogs[0][0], *words)
    assert tree(tmp_path) == []  # no output, no partial folder, no checkpoint folder
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert not panel.pause_button.isEnabled() and not panel.save_now_button.isEnabled()

    wait_done(qtbot, panel.start())
    assert len(error_dialogs) == 1 and panel.last_result is not None
    assert (out / "config.json").is_file() and tree(tmp_path)[0] == "student-out"


# --- extract LoRA -----------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", ["disk full", "unreadable input"])
def test_extract_lora_fails_mid_run(window, qtbot, llama_family, tmp_path, monkeypatch, error_dialogs, failure):
    import safetensors.torch

    if failure == "disk full":  # after every module was factored, when the adapter is written
        injected = fail_once(safetensors.torch.save_file, 1, DISK_FULL)
        monkeypatch.setattr(safetensors.torch, "save_file", injected)
        words = ("Not enough disk space", tmp_path.name)
    else:
        injected, words = fail_once(ModelReader._read_at, 9, CANNOT_READ), ("Reading tensor", "Input/output error")
        monkeypatch.setattr(ModelReader, "_read_at", injected)
    base, ft1, _ = llama_family
    dialog = window.open_extract_lora()
    dialog.set_inputs(str(ft1), str(base), str(tmp_path / "adapter"))
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    events = watch_events(dialog.runner)
    wait_done(qtbot, dialog.start())
    assert injected.failed and any(isinstance(e, LoraModuleError) for e in events)
    assert error_dialogs == []  # the dialog shows it in its own error line
    assert dialog.error_label.isVisible()
    assert_one_sentence(dialog.error_label.text(), *words)
    assert tree(tmp_path) == []
    assert dialog.run_button.isEnabled() and dialog.output.isEnabled() and not dialog.cancel_button.isEnabled()

    wait_done(qtbot, dialog.start())
    assert dialog.result is not None and dialog.error_label.isHidden()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    dialog.close()


# --- vocabulary comparison (a background check: the message is in the tokenizer group) ---------------

@pytest.mark.parametrize("failure", ["broken tokenizer", "a bug"])
def test_vocabulary_comparison_fails_mid_run(window, qtbot, llama_family, monkeypatch, error_dialogs, failure):
    base, ft1, _ = map(str, llama_family)
    if failure == "broken tokenizer":  # the second model's tokenizer.json is cut short
        error = InputError("The tokenizer of model 'ft1' could not be loaded (tokenizer.json is not valid JSON).")
    else:
        error = KeyError("vocab")
    injected = fail_once(vocab_compare.load_tokenizer, 2, error)
    monkeypatch.setattr(vocab_compare, "load_tokenizer", injected)
    panel = window.tokenizer_panel
    window.models_panel.add_models([base, ft1])
    before = tree(llama_family[0].parent)
    panel.source_combo.setCurrentIndex(panel.source_combo.findData("union"))
    qtbot.waitUntil(lambda: panel.error is not None, timeout=JOB_TIMEOUT_MS)
    assert injected.failed
    assert panel.status_label.isVisibleTo(window)
    assert_one_sentence(panel.status_label.text(), *(("ft1", "tokenizer") if failure != "a bug" else ("KeyError",)),
                        bug=failure == "a bug")
    assert error_dialogs == [] and not panel.table.isVisibleTo(window)
    assert tree(llama_family[0].parent) == before
    assert panel.compare_button.isVisibleTo(window) and panel.compare_button.text() == "Compare again"

    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.comparison is not None and not panel.vocab_runner.busy, timeout=JOB_TIMEOUT_MS)
    assert panel.error is None and panel.table.rowCount() == 2 and not panel.status_label.isVisibleTo(window)


# --- the demo build ---------------------------------------------------------------------------------

def small_demo(monkeypatch):
    monkeypatch.setattr(start_panel, "build_demo",
                        lambda root, cancel=None: demo_module.build_demo(root, SMALL, cancel=cancel))


@pytest.mark.parametrize("failure", ["disk full", "out of memory"])
def test_demo_build_fails_mid_run(qtbot, tmp_path, monkeypatch, no_leaked_windows, error_dialogs, failure):
    small_demo(monkeypatch)
    if failure == "disk full":  # saving the first fine-tune, after the base was trained and saved
        injected, words = fail_once(demo_module._save, 2, DISK_FULL), ("Not enough disk space", "the demo models")
        monkeypatch.setattr(demo_module, "_save", injected)
    else:
        injected, words = fail_once(demo_module._batch, 15, NO_MEMORY), ("Out of memory",)
        monkeypatch.setattr(demo_module, "_batch", injected)
    panel = start_panel.StartPanel(root=tmp_path / "demo-models")
    qtbot.addWidget(panel)
    events = watch_events(panel.runner)
    wait_done(qtbot, panel.start_demo())
    assert injected.failed and any(isinstance(e, StepProgress) for e in events)
    assert len(error_dialogs) == 1
    assert_one_sentence(error_dialogs[0][0], *words)
    assert tree(tmp_path) == []  # no demo folder, no partial one
    assert panel.demo_button.isEnabled()

    with qtbot.waitSignal(panel.demo_ready, timeout=JOB_TIMEOUT_MS):
        panel.start_demo()
    assert len(error_dialogs) == 1 and "built in" in panel.status_label.text()
