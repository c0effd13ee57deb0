"""The app's Hub views against a local Hub (tests/fixtures/hub_server.py) that the real huggingface_hub
client talks to: search, the remote pre-flight, a download with progress, Cancel and resume, a gated
repo's sentence, publishing with progress, and the setting that keeps the app offline by default."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from fusion_gui.engine.errors import InputError  # noqa: E402
from fusion_gui.engine.hub.events import DownloadProgress, UploadProgress  # noqa: E402
from fusion_gui.session.merge import MergeSession  # noqa: E402
from fusion_gui.ui.hub.hub_text import DOWNLOADS_OFF  # noqa: E402
from fusion_gui.ui.hub.publish_dialog import PublishButton  # noqa: E402
from fusion_gui.ui.panels.models_panel import ModelsPanel  # noqa: E402
from fusion_gui.ui.settings import AppSettings  # noqa: E402
from ui_helpers import (  # noqa: E402,F401
    JOB_TIMEOUT_MS, Gate, close_questions, config_dir, error_dialogs, no_leaked_windows, preflight, run_merge,
    save_screenshot, window,
)

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot, config_dir, no_leaked_windows, hub):  # noqa: F811 - pytest fixtures
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
    button = PublishButton()
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


# --- against the local Hub -------------------------------------------------------------------------------


def allowed_dialog(panel):
    panel.settings.allow_hub_downloads = True
    return panel.pick_from_hub()


def wait_preflight(qtbot, dialog, repo: str, revision: str = "", ok: bool = True):
    """Name a repo and wait for the remote pre-flight's answer (result, or failure when not ok)."""
    signal = dialog.preflight_runner.result if ok else dialog.preflight_runner.failed
    with qtbot.waitSignal(signal, timeout=JOB_TIMEOUT_MS):
        dialog.set_repo(repo, revision)


def local_copy(hub, repo_id: str, folder):
    """The fake Hub's files of a repo as a local model folder (a base the pre-flight compares with)."""
    for name, data in hub.repos[repo_id].files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def download(qtbot, dialog):
    events = []
    worker = dialog.start_download()
    assert worker is not None, dialog.error_label.text()
    worker.event.connect(events.append)
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    return events


def test_search_lists_name_downloads_likes_license_gated_and_size(panel, qtbot, hub):
    dialog = allowed_dialog(panel)
    with qtbot.waitSignal(dialog.search_view.job.result, timeout=JOB_TIMEOUT_MS):
        dialog.search_view.search_now("org/")
    rows = {row[0]: row for row in dialog.search_view.row_texts()}
    assert list(rows)[0] == "org/ft"  # most downloaded first
    assert rows["org/ft"][1:5] == ("200", "7", "mit", "no")
    assert rows["org/gated"][4] == "yes" and rows["org/base"][3] == "apache-2.0"
    assert rows["org/ft"][5].endswith("KB")  # the weights' size, from the Hub's parameter count
    with qtbot.waitSignal(dialog.search_view.job.result, timeout=JOB_TIMEOUT_MS):  # typing: debounced
        dialog.search_view.query_edit.clear()
        qtbot.keyClicks(dialog.search_view.query_edit, "gat")
    assert [row[0] for row in dialog.search_view.row_texts()] == ["org/gated"]
    searches = [p for m, p, _ in hub.requests if m == "GET" and p.split("?")[0] == "/api/models"]
    assert len(searches) == 2, searches  # one for "org/", one for the typed "gat": not one per key


def test_choosing_a_result_runs_the_preflight_against_the_current_base(panel, qtbot, hub, tmp_path):
    panel.add_models([str(local_copy(hub, "org/base", tmp_path / "base"))])
    dialog = allowed_dialog(panel)
    with qtbot.waitSignal(dialog.search_view.job.result, timeout=JOB_TIMEOUT_MS):
        dialog.search_view.search_now("other")
    with qtbot.waitSignal(dialog.preflight_runner.result, timeout=JOB_TIMEOUT_MS):
        dialog.search_view.table.selectRow(0)  # the user clicks org/other
    assert dialog.repo_edit.text() == "org/other"
    text = dialog.preflight_label.text()
    assert "org/other: LlamaForCausalLM, 2 layers" in text and "F32" in text and "Free disk" in text
    assert "⚠" in text and dialog.last_report.problems  # wider than the base: flagged before any download
    wait_preflight(qtbot, dialog, "org/ft")
    assert "⚠" not in dialog.preflight_label.text() and "Note: skipped" in dialog.preflight_label.text()
    qtbot.wait(50)  # the layout settles around the longer text, as between a user's clicks
    save_screenshot(dialog, "hub_dialog_preflight.png")


def test_download_shows_progress_and_adds_the_repo_to_the_merge(panel, qtbot, hub):
    dialog = allowed_dialog(panel)
    wait_preflight(qtbot, dialog, "org/ft")
    events = [e for e in download(qtbot, dialog) if isinstance(e, DownloadProgress)]
    assert len({e.file for e in events}) > 2 and events[-1].done == events[-1].total > 0
    assert dialog.overall_bar.value() == 1000 and "of" in dialog.overall_label.text()
    assert panel.document.state.model_refs() == ["org/ft"]  # through the session's intent
    assert panel.info("org/ft").error is None  # resolves from the cache, offline, like any cached model
    assert panel.settings.hub_pending_download == ""
    assert "added it to the merge" in dialog.status_label.text()


def test_cancel_keeps_the_bytes_and_reopening_offers_to_resume(panel, qtbot, hub, monkeypatch):
    import threading

    from fixtures import hub_server

    # The local Hub holds the second weight file until the test has pressed Cancel: the download's own
    # thread would otherwise finish these tiny files before the click.
    release, full_gets = threading.Event(), []
    serve = hub_server._Handler._resolve

    def held(handler, repo_id, revision, name, head):
        if not head and name.endswith(".safetensors") and handler.headers.get("Range") is None:
            full_gets.append(name)
            if len(full_gets) > 1:
                release.wait(JOB_TIMEOUT_MS / 1000)
        return serve(handler, repo_id, revision, name, head)

    monkeypatch.setattr(hub_server._Handler, "_resolve", held)
    dialog = allowed_dialog(panel)
    dialog.set_repo("org/ft")
    seen: list[DownloadProgress] = []
    worker = dialog.start_download()
    worker.event.connect(seen.append)
    try:
        qtbot.waitUntil(lambda: len(full_gets) > 1, timeout=JOB_TIMEOUT_MS)
        qtbot.wait(50)
        save_screenshot(dialog, "hub_dialog_downloading.png")
        with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
            dialog.cancel_button.click()
            release.set()
    finally:
        release.set()
    assert "Download cancelled" in dialog.status_label.text()
    assert panel.document.state.model_refs() == []  # nothing half-downloaded presented as a model
    assert panel.settings.hub_pending_download == "org/ft"
    dialog.close()
    panel.hub_dialog = None  # as after a restart: a new dialog, the setting read back
    panel.settings = AppSettings.load()
    again = allowed_dialog(panel)
    assert again.repo_edit.text() == "org/ft" and again.download_button.text() == "Resume download"
    assert "interrupted" in again.status_label.text()
    qtbot.waitUntil(lambda: not again.preflight_runner.busy, timeout=JOB_TIMEOUT_MS)
    download(qtbot, again)
    assert panel.document.state.model_refs() == ["org/ft"]
    first = full_gets[0]  # fetched whole before Cancel ...
    assert any(e.file == first and e.file_done == e.file_total for e in seen)
    assert len(hub.gets("org/ft", first)) == 1, hub.requests  # ... and not again


@pytest.mark.parametrize("repo, revision, words", [
    ("org/gated", "", "gated model"),
    ("org/nope", "", "There is no model 'org/nope'"),
    ("org/ft", "no-such-branch", "has no revision 'no-such-branch'"),
    ("org/binonly", "", ".bin"),
])
def test_hub_faults_are_one_sentence_in_the_dialog(panel, qtbot, hub, repo, revision, words):
    dialog = allowed_dialog(panel)
    wait_preflight(qtbot, dialog, repo, revision, ok=False)
    assert words in dialog.error_label.text()
    if repo == "org/gated":  # the page where access is requested is a link
        assert f"<a href='{hub.url}/org/gated'>" in dialog.error_label.text()
        assert not dialog.download_button.isEnabled()  # it would fail the same way
        qtbot.wait(50)
        save_screenshot(dialog, "hub_dialog_gated.png")
    wait_preflight(qtbot, dialog, "org/ft")  # still usable
    assert dialog.error_label.text() == "" and dialog.download_button.isEnabled()


def test_a_recipe_naming_a_missing_repo_says_how_to_allow_downloads(hub):
    from fusion_gui.ui.hub.merge_models import hub_models_plan

    with pytest.raises(InputError, match="Not on this computer: org/base, org/ft. Turn on Settings"):
        hub_models_plan(["org/base", "org/ft"], allowed=False)
    text, problems = hub_models_plan(["org/base", "org/ft"], allowed=True)
    assert text.startswith("Run first downloads") and "org/base (" in text and "org/ft (" in text
    assert problems == []
    assert not [r for m, p, r in hub.requests if m == "GET" and p.endswith(".safetensors") and r is None]


def test_the_merge_tab_downloads_what_its_recipe_names_once_allowed(window, qtbot, hub, tmp_path):
    window.models_panel.add_models(["org/base", "org/ft"])
    assert set(window.models_panel.problems()) == {"org/base", "org/ft"}  # not on this computer yet
    assert preflight(qtbot, window) is None
    assert "Turn on Settings" in window.run_panel.preflight_label.text()
    window.allow_downloads_action.setChecked(True)
    assert window.settings.allow_hub_downloads
    preflight(qtbot, window)
    assert "Run first downloads" in window.run_panel.preflight_label.text()
    run_merge(qtbot, window, tmp_path / "merged")
    assert window.run_panel.last_result is not None, window.run_panel.log_view.toPlainText()
    assert (tmp_path / "merged" / "config.json").is_file()
    assert not window.run_panel.publish_button.isHidden()
    assert window.models_panel.problems() == {}  # the downloaded rows are described again
    publish = window.run_panel.publish_button.open_dialog()  # beside the result, for this folder
    qtbot.waitUntil(lambda: "base_model_relation: merge" in publish.preview.toPlainText(), timeout=JOB_TIMEOUT_MS)
    assert "- org/base" in publish.preview.toPlainText() and "- org/ft" in publish.preview.toPlainText()
    publish.close()


def test_publish_previews_the_card_uploads_with_progress_and_shows_the_url(qtbot, hub, tmp_path, no_leaked_windows):
    from fusion_gui.ui.hub.publish_dialog import PublishDialog

    out = local_copy(hub, "org/ft", tmp_path / "out")
    (out / "README.md").write_text("---\nlicense: mit\n---\n# A merge\n", encoding="utf-8")
    (out / "mergekit_config.yml").write_text("merge_method: linear\nmodels:\n  - model: org/base\n"
                                             "  - model: org/ft\n", encoding="utf-8")
    dialog = PublishDialog(str(out))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: "base_model" in dialog.preview.toPlainText(), timeout=JOB_TIMEOUT_MS)
    preview = dialog.preview.toPlainText()
    assert "org/base" in preview and "base_model_relation: merge" in preview and "license: mit" in preview
    dialog.license_edit.setText("apache-2.0")  # the user's licence replaces the card's, in the preview too
    qtbot.waitUntil(lambda: "license: apache-2.0" in dialog.preview.toPlainText(), timeout=JOB_TIMEOUT_MS)
    dialog.repo_edit.setText("me/published")
    events = []
    worker = dialog.start()
    worker.event.connect(events.append)
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        pass
    assert dialog.url == f"{hub.url}/me/published", dialog.error_label.text()
    assert dialog.url in dialog.url_label.text() and dialog.progress_bar.value() == 1000
    uploads = [e for e in events if isinstance(e, UploadProgress) and e.stage == "upload"]
    assert len(uploads) > 1 and "model.safetensors.index.json" in hub.repos["me/published"].files
    assert b"license: apache-2.0" in hub.repos["me/published"].files["README.md"]
    qtbot.wait(50)
    save_screenshot(dialog, "hub_publish.png")
    dialog.close()


def test_cancelling_an_upload_says_so_and_the_dialog_stays_usable(qtbot, hub, tmp_path, monkeypatch,
                                                                  no_leaked_windows):  # noqa: F811
    from fusion_gui.ui.hub import hub_text, publish_dialog

    gate = Gate(lambda event: isinstance(event, UploadProgress) and event.stage == "upload")
    monkeypatch.setattr(publish_dialog, "publish_job", gate.wrap(hub_text.publish_job))
    dialog = publish_dialog.PublishDialog(str(local_copy(hub, "org/base", tmp_path / "out")))
    qtbot.addWidget(dialog)
    dialog.repo_edit.setText("me/cancelled")
    worker = dialog.start()
    # a job that ends before its first upload (refused, failed) says why here instead of timing out
    qtbot.waitUntil(lambda: gate.reached.is_set() or not worker.running, timeout=JOB_TIMEOUT_MS)
    assert gate.reached.is_set(), dialog.status_label.text()
    assert not dialog.repo_edit.isEnabled()  # what is being sent where stays as shown
    with qtbot.waitSignal(worker.done, timeout=JOB_TIMEOUT_MS):
        dialog.cancel_button.click()
    assert dialog.url is None and "Upload cancelled" in dialog.status_label.text()
    assert dialog.repo_edit.isEnabled() and dialog.publish_button.isEnabled()
