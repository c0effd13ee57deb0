"""Start-up, remembered settings, drag and drop, the Hugging Face cache list, the Qt binding."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QMimeData, QObject, QPointF, Qt, QTimer, QUrl, Signal  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QApplication, QLabel  # noqa: E402

from fusion_gui.ui.settings import RECENT_LIMIT, AppSettings, settings_path  # noqa: E402
from ui_helpers import close_questions, config_dir, error_dialogs, no_leaked_windows, window  # noqa: E402,F401

pytestmark = pytest.mark.gui


def test_the_qt_binding_does_not_steal_references(qapp):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every void call and to True on
    every emit(), so a long merge crashes the app ("deallocating None"). Fail here, clearly."""

    class Emitter(QObject):
        changed = Signal(object)

    emitter, label = Emitter(), QLabel()
    emitter.changed.connect(lambda value: None)
    nones, trues = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        label.setText("x")
        emitter.changed.emit(1)
    assert sys.getrefcount(None) - nones > -100, "this PySide6 build leaks references to None"
    assert sys.getrefcount(True) - trues > -100, "this PySide6 build leaks references to True"


def test_run_gui_opens_the_window_and_returns_the_exit_code(config_dir, monkeypatch):
    from fusion_gui.ui import app as app_module
    from fusion_gui.ui.main_window import MainWindow

    shown = []

    def close_soon(self):
        shown.append(self)
        QTimer.singleShot(50, self.close)
        QTimer.singleShot(100, QApplication.instance().quit)

    monkeypatch.setattr(MainWindow, "show", close_soon)
    assert app_module.run_gui([]) == 0
    assert shown and settings_path().is_file()  # closing saved the settings
    for window in shown:
        window.deleteLater()


def test_settings_survive_a_restart(config_dir, qtbot, llama_family, tmp_path):
    from fusion_gui.ui.main_window import MainWindow

    first = MainWindow()
    qtbot.addWidget(first)
    first.resize(640, 480)
    first.models_panel.add_models([str(llama_family[0]), str(llama_family[1])])
    first.strategy_panel.set_method("task_arithmetic")
    first.settings.add_recent_output_dir(str(tmp_path / "out"))
    first.close()
    saved = AppSettings.load()
    assert saved.recent_models[:2] == [str(llama_family[1]), str(llama_family[0])]
    assert "task_arithmetic" in saved.last_recipe_yaml

    second = MainWindow()
    qtbot.addWidget(second)
    assert second.document.state.method == "task_arithmetic"
    assert second.models_panel.display_refs() == [str(llama_family[0]), str(llama_family[1])]
    assert (second.width(), second.height()) == (640, 480)
    assert second.run_panel.output_combo.itemText(0) == str(tmp_path / "out")


def test_settings_file_is_forgiving(config_dir):
    config_dir.mkdir(parents=True)
    settings_path().write_text("{not json")
    assert AppSettings.load() == AppSettings()
    settings_path().write_text('{"recent_models": "oops", "unknown": 1, "last_recipe_yaml": "x"}')
    loaded = AppSettings.load()
    assert loaded.recent_models == [] and loaded.last_recipe_yaml == "x"
    for i in range(RECENT_LIMIT + 5):
        loaded.add_recent_model(f"m{i}")
    loaded.add_recent_model("m3")
    assert len(loaded.recent_models) == RECENT_LIMIT and loaded.recent_models[0] == "m3"


def test_dropping_folders_and_files_adds_models(window, llama_family, tmp_path):
    loose = next(llama_family[2].glob("*.safetensors"))
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(llama_family[0])), QUrl.fromLocalFile(str(loose)),
                  QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.models_panel.display_refs() == [str(llama_family[0]), str(loose)]
    info = window.models_panel.info(str(loose))
    assert info.shards == 1 and info.parameters and info.error is None


def test_model_table_describes_each_model(window, llama_family):
    window.models_panel.add_models([str(llama_family[0])])
    info = window.models_panel.info(str(llama_family[0]))
    assert info.architecture == "LlamaForCausalLM" and info.dtype == "float32"
    assert info.num_layers == 4 and info.shards >= 2 and info.size_on_disk > 0
    texts = [window.models_panel.table.item(0, c).text() for c in range(1, 8)]
    assert texts[0] == "llama-base" and texts[-1] == "base"


def test_a_missing_model_is_a_flagged_row_not_a_crash(window, tmp_path):
    window.models_panel.add_models([str(tmp_path / "nowhere")])
    assert "not found" in window.models_panel.problems()[str(tmp_path / "nowhere")]


def test_hub_cache_list_handles_a_missing_cache(monkeypatch, tmp_path):
    from fusion_gui.ui.dialogs.hub_cache_dialog import scan_hub_cache

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache-here"))
    repos, note = scan_hub_cache()
    assert repos == [] and "No Hugging Face cache" in note


def test_hub_cache_list_finds_cached_models(monkeypatch, tmp_path, llama_family):
    from fusion_gui.ui.dialogs.hub_cache_dialog import scan_hub_cache

    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text((llama_family[0] / "config.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    repos, note = scan_hub_cache()
    assert [r[0] for r in repos] == ["org/tiny"]


def test_error_dialog_has_details_behind_a_button(qtbot):
    from fusion_gui.ui.dialogs.error_dialog import ErrorDialog

    dialog = ErrorDialog("Model 'x' not found.", "Traceback ...")
    qtbot.addWidget(dialog)
    assert dialog.text() == "Model 'x' not found." and dialog.detailedText() == "Traceback ..."
    plain = ErrorDialog("Just this.", "Just this.")
    qtbot.addWidget(plain)
    assert plain.detailedText() == ""
