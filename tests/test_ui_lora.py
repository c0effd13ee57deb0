"""LoRA in the GUI: Tools ▸ Extract LoRA runs the engine on a worker and shows its numbers, an
adapter folder is a model in the Models panel, and Path-typed method parameters get a file row."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
import torch  # noqa: E402
from PySide6.QtCore import QUrl  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QSpinBox  # noqa: E402

from fusion_gui.engine.lora import extract_lora  # noqa: E402
from fusion_gui.engine.methods import base as methods_base  # noqa: E402
from fusion_gui.engine.methods.base import MergeMethod, MethodResult, ParamSpec  # noqa: E402
from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config  # noqa: E402
from fusion_gui.ui.dialogs import extract_lora_dialog  # noqa: E402
from fusion_gui.ui.main_window import dropped_paths  # noqa: E402
from fusion_gui.ui.panels.param_row import FileField  # noqa: E402
from helpers import drain  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, Gate, after_progress, close_questions, config_dir, error_dialogs, no_leaked_windows, save_screenshot,
    window,
)

pytestmark = pytest.mark.gui


def extract_in_dialog(qtbot, dialog, finetune, base, out: Path, rank: int = 4):
    dialog.set_inputs(str(finetune), str(base), str(out))
    dialog.rank.setValue(rank)
    dialog.device.setCurrentIndex(dialog.device.findData("cpu"))
    worker = dialog.start()
    assert worker is not None, dialog.error_label.text()
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    return worker


# --- Tools ▸ Extract LoRA -------------------------------------------------------------------------

@pytest.mark.screenshot
def test_the_dialog_shows_one_row_per_module_with_the_engines_numbers(window, qtbot, llama_family, tmp_path):
    base, ft1, _ = llama_family
    tools = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Tools")
    action = next(a for a in tools.actions() if a.text() == "Extract LoRA from a fine-tune…")
    action.trigger()
    dialog = window.open_extract_lora()  # the same dialog, kept
    assert dialog is window._extract_lora_dialog and dialog.isVisible() and dialog.rank.value() == 16
    extract_in_dialog(qtbot, dialog, ft1, base, tmp_path / "adapter", rank=4)
    assert dialog.error_label.isHidden(), dialog.error_label.text()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    expected, _ = drain(extract_lora(str(ft1), str(base), tmp_path / "again", 4, device="cpu"))
    shown = {name: (rank, error) for name, rank, error in dialog.row_texts()}
    assert len(shown) == len(expected.modules) == dialog.table.rowCount() > 0
    for module in expected.modules:
        rank, error = shown[module.name.removesuffix(".weight")]
        assert rank == str(module.rank) and error == f"{module.rel_error:.4g}"
    summary = dialog.summary_label.text()
    assert f"mean {expected.mean_rel_error:.4g}, max {expected.max_rel_error:.4g}" in summary
    assert dialog.output_label.text() == str(tmp_path / "adapter")

    dialog.table.sortItems(2)  # by the number, not the text
    errors = [float(error) for _, _, error in dialog.row_texts()]
    assert errors == sorted(errors)
    assert "not in the adapter" in summary  # the engine's warning: norms and embeddings changed too
    qtbot.wait(50)  # let the layout settle before the picture
    save_screenshot(dialog, "extract-lora.png")

    window.models_panel.add_models([str(base)])
    qtbot.waitUntil(dialog.add_button.isEnabled, timeout=JOB_TIMEOUT_MS)  # checked against the (empty) merge
    dialog.add_button.click()  # the merge changed since: checked again, then added
    qtbot.waitUntil(lambda: str(tmp_path / "adapter") in window.document.state.model_refs(), timeout=JOB_TIMEOUT_MS)
    assert window.tabs.currentIndex() == 0
    assert window.models_panel.problems() == {}
    dialog.close()


def test_cancel_leaves_no_output_folder(window, qtbot, llama_family, tmp_path, monkeypatch):
    base, ft1, _ = llama_family
    gate = Gate(after_progress(2))
    monkeypatch.setattr(extract_lora_dialog, "extract_job", gate.wrap(extract_lora_dialog.extract_job))
    dialog = window.open_extract_lora()
    dialog.set_inputs(str(ft1), str(base), str(tmp_path / "cut"))
    worker = dialog.start()
    qtbot.waitUntil(gate.reached.is_set, timeout=JOB_TIMEOUT_MS)
    assert dialog.cancel_button.isEnabled() and not dialog.run_button.isEnabled()
    with qtbot.waitSignals([worker.cancelled, worker.done], timeout=JOB_TIMEOUT_MS, order="strict"):
        dialog.cancel_button.click()
    assert not (tmp_path / "cut").exists() and not list(tmp_path.glob(".cut*"))
    assert "Cancelled" in dialog.status_label.text() and dialog.table.rowCount() == 0
    assert dialog.run_button.isEnabled() and not dialog.add_button.isEnabled()
    dialog.close()


def test_a_bad_path_is_one_sentence_and_the_dialog_stays_usable(window, qtbot, llama_family, tmp_path,
                                                                error_dialogs):
    base, ft1, _ = llama_family
    dialog = window.open_extract_lora()
    assert dialog.start() is None  # nothing chosen yet
    assert "Choose the fine-tune" in dialog.error_label.text()

    extract_in_dialog(qtbot, dialog, tmp_path / "no-such-model", base, tmp_path / "out")
    sentence = dialog.error_label.text()
    assert dialog.error_label.isVisible() and "not found" in sentence and "\n" not in sentence
    assert not (tmp_path / "out").exists() and error_dialogs == []

    (tmp_path / "taken").mkdir()
    dialog.set_inputs(str(ft1), str(base), str(tmp_path / "taken"))
    assert dialog.start() is None and "already exists" in dialog.error_label.text()

    extract_in_dialog(qtbot, dialog, ft1, base, tmp_path / "fine")  # still usable
    assert dialog.error_label.isHidden() and dialog.table.rowCount() > 0
    dialog.close()


# --- adapters as models ------------------------------------------------------------------------------

def peft_adapter(base: Path, out: Path, layers: int = 4) -> Path:
    """A tiny PEFT LoRA adapter (r=4) on the model saved in `base`."""
    peft = pytest.importorskip("peft")
    model = build_model(tiny_config("llama", layers=layers), seed=0)
    peft_model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: an adapter that changes nothing
                param.normal_(0, 0.1)
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(out)
    return out


def test_an_adapter_folder_is_a_model_described_and_checked_against_the_base(window, llama_family, tmp_path):
    base, ft1, _ = llama_family
    adapter = peft_adapter(base, tmp_path / "my-adapter")
    assert dropped_paths([QUrl.fromLocalFile(str(adapter))])[0] == [str(adapter)]  # drag and drop

    window.models_panel.add_models([str(base), str(ft1), str(adapter / "adapter_model.safetensors")])
    refs = window.document.state.refs_base_first()
    assert refs == [str(base), str(ft1), str(adapter)]  # its weights file stands for the folder
    info = window.models_panel.info(str(adapter))
    assert info.error is None and info.note == f"LoRA adapter r=4 on {Path(base).name}"
    assert info.shapes == window.models_panel.info(str(base)).shapes
    row = refs.index(str(adapter))
    cell = window.models_panel.table.item(row, 2)
    assert cell.text() == info.note and str(base) in cell.toolTip() and "LlamaForCausalLM" in cell.toolTip()
    assert window.models_panel.table.item(row, 7).text() == "ok"
    assert str(adapter) in window.settings.recent_models

    other_base = save_model(build_model(tiny_config("llama", layers=2), seed=0), tmp_path / "small-base")
    misfit = peft_adapter(other_base, tmp_path / "misfit", layers=2)
    window.models_panel.add_models([str(misfit)])
    assert "Lacks" in window.models_panel.problems()[str(misfit)]
    assert window.models_panel.table.item(refs.index(str(adapter)) + 1, 7).text() == "incompatible"

    (tmp_path / "lost").mkdir()
    (tmp_path / "lost" / "adapter_config.json").write_text('{"peft_type": "LORA", "base_model_name_or_path": "gone"}')
    window.models_panel.add_models([str(tmp_path / "lost")])
    assert "adapter_model.safetensors" in window.models_panel.problems()[str(tmp_path / "lost")]


# --- Path-typed method parameters --------------------------------------------------------------------

@pytest.fixture
def file_method(monkeypatch):
    """A method with a global and a per-model file parameter, registered for this test only."""
    def keep_first(tensors, base_index, params, per_model, generator):
        return MethodResult(tensors[0])

    method = MergeMethod(
        name="file_test", pretty_name="File test", fn=keep_first, base="optional",
        params=(ParamSpec("calibration", "global", Path, required=True, help="Text to calibrate on"),
                ParamSpec("samples", "global", int, default=8, minimum=1),
                ParamSpec("notes", "model", Path, help="A file per model")),
    )
    monkeypatch.setitem(methods_base._REGISTRY, method.name, method)
    return method


def test_a_path_parameter_is_a_file_row_that_writes_the_recipe(file_method, window, llama_family, tmp_path,
                                                               monkeypatch):
    base, ft1, _ = llama_family
    window.models_panel.add_models([str(base), str(ft1)])
    window.strategy_panel.set_method("file_test")
    row = window.strategy_panel._rows["calibration"]
    assert isinstance(row.value_widget, FileField) and row.curve_button.isHidden()
    assert isinstance(window.strategy_panel._rows["samples"].value_widget, QSpinBox)
    assert "calibration" not in (window.document.recipe().parameters or {})  # only the user can name it
    assert row.value_widget.edit.text() == "" and row.summary.isHidden()

    text = tmp_path / "calib.txt"
    text.write_text("some calibration text\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(text), ""))
    row.value_widget.browse_button.click()
    assert window.document.recipe().parameters["calibration"] == str(text)
    assert f"calibration: {text}" in window.recipe_panel.text()
    assert row.summary.isHidden()

    missing = str(tmp_path / "missing.txt")
    row.value_widget.edit.setText(missing)
    row.value_widget.edit.editingFinished.emit()
    assert window.document.recipe().parameters["calibration"] == missing  # kept as written, flagged
    row = window.strategy_panel._rows["calibration"]
    assert not row.summary.isHidden() and "no such file" in row.summary.text()
    assert not row.value_widget.isHidden() and row.value_widget.edit.text() == missing
    assert "no file at" in row.summary.toolTip()

    table = window.strategy_panel.model_table
    refs = window.document.state.refs_base_first()
    cell = table.item(refs.index(str(ft1)), 1)
    cell.setText(str(text))
    assert window.document.state.model_setting(str(ft1), "notes") == str(text)
    table.item(refs.index(str(ft1)), 1).setText(missing)
    window.strategy_panel.refresh()
    cell = table.item(refs.index(str(ft1)), 1)
    assert cell.text() == missing and "no file at" in cell.toolTip()
    table.setCurrentCell(refs.index(str(ft1)), 1)
    assert window.strategy_panel.model_curve_button.text() == "Choose file…"
    window.strategy_panel.model_curve_button.click()
    assert window.document.state.model_setting(str(ft1), "notes") == str(text)


def test_the_real_fisher_method_shows_a_browse_row(window):
    from fusion_gui.engine.methods import registry

    if "fisher" not in registry():
        pytest.skip("no fisher method in this tree yet")
    window.strategy_panel.set_method("fisher")
    row = window.strategy_panel._rows["calibration"]
    assert isinstance(row.value_widget, FileField) and row.value_widget.browse_button.text() == "Browse…"
