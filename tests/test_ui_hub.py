"""The app's Hub views against a local Hub (tests/fixtures/hub_server.py) that the real huggingface_hub
client talks to: search, the remote pre-flight, a download with progress, Cancel and resume, a gated
repo's sentence, publishing with progress, and the setting that keeps the app offline by default."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from fusion_gui.session.merge import MergeSession  # noqa: E402
from fusion_gui.ui.hub.hub_text import DOWNLOADS_OFF  # noqa: E402
from fusion_gui.ui.hub.publish_dialog import PublishButton  # noqa: E402
from fusion_gui.ui.panels.models_panel import ModelsPanel  # noqa: E402
from fusion_gui.ui.settings import AppSettings  # noqa: E402
from ui_helpers import config_dir, no_leaked_windows  # noqa: E402,F401

pytestmark = pytest.mark.gui


@pytest.fixture
def online(monkeypatch):
    """The test session runs offline (conftest); these tests reach only the local Hub."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


@pytest.fixture
def panel(qtbot, config_dir, no_leaked_windows, online):  # noqa: F811 - pytest fixtures
    """A Models panel bound to a merge session, as the window has it; downloads off (the default)."""
    view = ModelsPanel(MergeSession(), settings=AppSettings())
    qtbot.addWidget(view)
    yield view
    if view.hub_dialog is not None:
        view.hub_dialog.close()


def test_the_setting_is_off_by_default_and_survives_a_restart(config_dir):  # noqa: F811
    assert AppSettings.load().allow_hub_downloads is False
    settings = AppSettings()
    settings.allow_hub_downloads = True
    settings.hub_pending_download = "org/name@dev"
    settings.save()
    again = AppSettings.load()
    assert again.allow_hub_downloads is True and again.hub_pending_download == "org/name@dev"


def test_with_the_setting_off_the_dialog_refuses_and_reaches_nothing(panel, qtbot, monkeypatch):
    from fusion_gui.ui.hub import hub_dialog

    def no_network(*_args):
        raise AssertionError("the Hub was reached with downloads off")

    monkeypatch.setattr(hub_dialog, "download_job", no_network)
    monkeypatch.setattr(hub_dialog, "preflight_job", no_network)
    dialog = panel.pick_from_hub()
    dialog.repo_edit.setText("org/tiny")
    assert dialog.preflight() is None
    assert dialog.start_download() is None
    assert dialog.error_label.text() == DOWNLOADS_OFF
    assert not dialog.download_button.isEnabled() and not dialog.search_view.isEnabled()
    assert dialog.notice.text() == DOWNLOADS_OFF
    assert panel.document.state.model_refs() == []


def test_ticking_the_box_turns_the_setting_on_for_the_whole_app(panel, config_dir):  # noqa: F811
    dialog = panel.pick_from_hub()
    dialog.allow_box.setChecked(True)
    assert panel.settings.allow_hub_downloads is True
    assert AppSettings.load().allow_hub_downloads is True  # saved at once: a crash does not lose it
    dialog.repo_edit.setText("org/tiny")
    dialog._update_controls()
    assert dialog.download_button.isEnabled() and dialog.search_view.isEnabled()


def test_the_publish_button_appears_only_with_a_result(qtbot, tmp_path):
    button = PublishButton("merge")
    qtbot.addWidget(button)
    assert button.isHidden() and button.open_dialog() is None
    button.set_result(str(tmp_path))
    assert not button.isHidden()
    button.set_result(None)
    assert button.isHidden()


def test_hf_hub_offline_keeps_the_dialog_off_even_with_the_setting_on(panel, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    panel.settings.allow_hub_downloads = True
    dialog = panel.pick_from_hub()
    dialog.repo_edit.setText("org/tiny")
    assert dialog.start_download() is None
    assert "HF_HUB_OFFLINE is set" in dialog.error_label.text()
