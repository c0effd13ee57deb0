"""“From the Hub…”: find a model on the Hugging Face Hub, check it from its safetensors headers alone,
then download it into the standard HF cache and add it to the merge.

Nothing touches the network until the user allows downloads (the app setting, ticked here or in the
Settings menu) and `HF_HUB_OFFLINE` is unset. Search and the remote pre-flight are background jobs where
only the newest request counts; the download is a JobRunner job with Cancel. huggingface_hub keeps an
interrupted file's bytes in the cache and resumes it, so the dialog remembers the unfinished download and
offers to resume it when reopened, even after a restart. Errors (gated, unknown repo, bad revision, no
network, a full disk, `.bin`-only weights) are one sentence in the dialog: the app stays usable.
"""

from __future__ import annotations

import re
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.hub.events import DownloadProgress
from fusion_gui.formatting import format_bytes
from fusion_gui.ui.hub.hub_text import (
    DOWNLOADS_OFF, OFFLINE_SET, describe_remote, download_job, download_text, fraction, hub_offline,
    preflight_job,
)
from fusion_gui.ui.hub.line import Line
from fusion_gui.ui.hub.search_view import HubSearchView
from fusion_gui.ui.hub.settings_text import ALLOW_DOWNLOADS
from fusion_gui.ui.jobs import JobRunner, LatestJob
from fusion_gui.ui.settings import AppSettings

PREFLIGHT_DELAY_MS = 500
ERROR_STYLE = "color: #b3261e;"
URL = re.compile(r"https?://[^\s,;'\"()<>]*[^\s,;'\"()<>.]")  # a sentence's full stop is not part of its link


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class HubDialog(QDialog):
    model_ready = Signal(str)  # a downloaded model's repo ref ('org/name' or 'org/name@revision')

    def __init__(self, settings: AppSettings, base_ref: Callable[[], str | None] = lambda: None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models from the Hugging Face Hub")
        self.resize(760, 640)
        self.settings, self.base_ref = settings, base_ref
        self.last_report = None
        self.preflight_failed = False  # the newest pre-flight's answer was an error: Download waits for a fix
        self.downloaded: str | None = None  # the local folder of the last finished download

        self.allow_box = QCheckBox(ALLOW_DOWNLOADS)
        self.allow_box.setChecked(settings.allow_hub_downloads)
        self.allow_box.toggled.connect(self._set_allowed)
        self.notice = QLabel(wordWrap=True)
        self.notice.setStyleSheet("color: #8a5a00;")
        self.search_view = HubSearchView()
        self.search_view.repo_chosen.connect(self.set_repo)
        self.repo_edit = QLineEdit(placeholderText="org/name")
        self.revision_edit = QLineEdit(placeholderText="main")
        self.revision_edit.setMaximumWidth(180)
        for edit in (self.repo_edit, self.revision_edit):
            edit.textEdited.connect(self.schedule_preflight)
        self.preflight_label = Line(rich=True)
        self.preflight_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.download_button = QPushButton("Download and add")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button = QPushButton("Cancel download")
        self.overall_bar = QProgressBar(minimum=0, maximum=1000, textVisible=False)
        self.overall_label = QLabel()
        self.file_bar = QProgressBar(minimum=0, maximum=1000, textVisible=False)
        self.file_label = QLabel()
        self.status_label = Line()
        self.error_label = Line(rich=True)
        self.error_label.setOpenExternalLinks(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        search_box = QGroupBox("Search")
        QVBoxLayout(search_box).addWidget(self.search_view)
        repo_row = QHBoxLayout()
        repo_row.addWidget(self.repo_edit, 1)
        repo_row.addWidget(QLabel("revision"))
        repo_row.addWidget(self.revision_edit)
        form = QFormLayout()
        form.addRow("Repository", repo_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        self.progress_box = QWidget()  # shown once a download starts
        self.progress_box.setVisible(False)
        progress = QFormLayout(self.progress_box)
        progress.setContentsMargins(0, 0, 0, 0)
        progress.addRow("Overall", self.overall_bar)
        progress.addRow("", self.overall_label)
        progress.addRow("File", self.file_bar)
        progress.addRow("", self.file_label)
        layout = QVBoxLayout(self)
        layout.addWidget(self.allow_box)
        layout.addWidget(self.notice)
        layout.addWidget(search_box, 1)
        layout.addLayout(form)
        layout.addWidget(self.preflight_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_box)
        layout.addWidget(self.status_label)
        layout.addWidget(self.error_label)
        layout.addWidget(close)

        self.preflight_runner = LatestJob(self, delay_ms=PREFLIGHT_DELAY_MS)
        self.preflight_runner.result.connect(self._show_preflight)
        self.preflight_runner.failed.connect(self._on_preflight_failed)
        self.runner = JobRunner(
            self, start_button=self.download_button, cancel_button=self.cancel_button,
            status_label=self.status_label, handlers={DownloadProgress: self._on_progress}, on_finished=self._on_finished,
            on_failed=lambda summary, _details: self._show_error(summary), on_cancelled=self._on_cancelled,
            on_done=self._update_controls, failure_title="Download failed", error_dialog=False)
        self._update_controls()

    # --- what tests and the Models panel use ------------------------------------------------------

    def ref(self) -> str:
        """The repo ref the fields name: 'org/name', or 'org/name@revision'."""
        repo, revision = self.repo_edit.text().strip(), self.revision_edit.text().strip()
        return f"{repo}@{revision}" if repo and revision else repo

    def allowed(self) -> str | None:
        """None when the Hub may be reached; else the sentence that says why not."""
        if hub_offline():
            return OFFLINE_SET
        return None if self.settings.allow_hub_downloads else DOWNLOADS_OFF

    def set_repo(self, repo_id: str, revision: str = "") -> None:
        self.repo_edit.setText(repo_id)
        self.revision_edit.setText(revision)
        self.preflight()

    def preflight(self):
        """Check the repo named now (headers only); returns the worker, or None when it cannot run."""
        ref = self.ref()
        self.error_label.clear()
        if not ref or self.allowed():
            self.preflight_runner.cancel_pending()
            self._update_controls()
            return None
        self.last_report, self.preflight_failed = None, False
        self.preflight_label.setText(f"Checking {_escape(ref)} from its safetensors headers…")
        base = self.base_ref()
        worker = self.preflight_runner.request(lambda token: preflight_job(ref, base, token))
        self._update_controls()
        return worker

    def schedule_preflight(self, *_args) -> None:
        self.last_report, self.preflight_failed = None, False
        self.preflight_label.clear()
        self.error_label.clear()
        if self.ref() and not self.allowed():
            self.preflight_runner.schedule(lambda: self._preflight_factory())
        self._update_controls()

    def _preflight_factory(self):
        ref, base = self.ref(), self.base_ref()
        self.preflight_label.setText(f"Checking {_escape(ref)} from its safetensors headers…")
        return lambda token: preflight_job(ref, base, token)

    def start_download(self):
        """Download the repo named now into the HF cache; returns the worker, or None when refused."""
        refusal = self.allowed() or (None if self.ref() else "Enter a repo id such as “org/name” first.")
        if refusal is None and self._disk_too_small():
            refusal = self._disk_too_small()
        if refusal:
            self._show_error(refusal)
            return None
        ref = self.ref()
        self.error_label.clear()
        self.downloaded = None
        self.settings.hub_pending_download = ref  # reopened after an interruption: offered again
        self.settings.save()
        for bar in (self.overall_bar, self.file_bar):
            bar.setValue(0)
        self.overall_label.setText("Starting…")
        self.file_label.clear()
        self.progress_box.setVisible(True)
        worker = self.runner.start(lambda token: download_job(ref, token), f"Downloading {ref}…")
        self._update_controls()
        return worker

    # --- showing answers ---------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.allow_box.blockSignals(True)
        self.allow_box.setChecked(self.settings.allow_hub_downloads)  # the menu may have changed it
        self.allow_box.blockSignals(False)
        pending = self.settings.hub_pending_download
        if pending and not self.runner.running and not self.repo_edit.text():
            repo, _, revision = pending.partition("@")
            self.repo_edit.setText(repo)
            self.revision_edit.setText(revision)
            self.status_label.setText(f"The download of {pending} was interrupted: its finished bytes are in "
                                      "the cache; “Resume download” carries on from there.")
            self.preflight()
        self._update_controls()

    def _set_allowed(self, on: bool) -> None:
        self.settings.allow_hub_downloads = on
        self.settings.save()
        self._update_controls()
        if on and self.ref():
            self.preflight()

    def _update_controls(self) -> None:
        refusal = self.allowed()
        running = self.runner.running
        self.notice.setText(refusal or "")
        self.notice.setVisible(bool(refusal))
        self.search_view.setEnabled(refusal is None)
        for edit in (self.repo_edit, self.revision_edit):
            edit.setEnabled(not running)
        self.download_button.setEnabled(refusal is None and bool(self.ref()) and not running
                                        and not self.preflight_failed and not self._disk_too_small())
        pending = self.settings.hub_pending_download
        self.download_button.setText("Resume download" if pending and pending == self.ref() and not running
                                     else "Download and add")

    def _disk_too_small(self) -> str | None:
        """The pre-flight's sentence when the download does not fit on the disk (refused before it starts)."""
        report = self.last_report
        if report is None or report.download_bytes <= report.free_bytes:
            return None
        return next((p for p in report.problems if "disk" in p.lower()),
                    f"The download needs {format_bytes(report.download_bytes)} but only "
                    f"{format_bytes(report.free_bytes)} is free where the Hugging Face cache is.")

    def _show_preflight(self, answer) -> None:
        report, partial = answer
        text, problems = describe_remote(self.ref(), report, partial)
        self.last_report = report
        lines = [_escape(line) for line in text.splitlines()]
        lines += [f"<span style='{ERROR_STYLE}'>⚠ {_escape(p)}</span>" for p in problems]
        self.preflight_label.setText("<br>".join(lines))
        self._update_controls()

    def _on_preflight_failed(self, summary: str, _details: str) -> None:
        self.preflight_failed = True
        self.preflight_label.clear()
        self._show_error(summary)
        self._update_controls()

    def _show_error(self, sentence: str) -> None:
        """One sentence; a link in it (a gated repo's access page) can be clicked."""
        self.error_label.setText(URL.sub(lambda m: f"<a href='{m[0]}'>{m[0]}</a>", _escape(sentence)))

    def _on_progress(self, event: DownloadProgress) -> None:
        overall, file_line = download_text(event)
        self.overall_bar.setValue(int(1000 * fraction(event.done, event.total)))
        self.file_bar.setValue(int(1000 * fraction(event.file_done, event.file_total)))
        self.overall_label.setText(overall)
        self.file_label.setText(file_line)

    def _on_finished(self, path) -> str:
        ref = self.ref()
        self.downloaded = str(path)
        self.settings.hub_pending_download = ""
        self.settings.save()
        self.overall_bar.setValue(1000)
        self.file_bar.setValue(1000)
        self.model_ready.emit(ref)
        return f"Downloaded {ref} into the Hugging Face cache and added it to the merge's models."

    def _on_cancelled(self) -> str:
        done = self.overall_label.text().split(" of ")[0] or format_bytes(0)
        return (f"Download cancelled: {done} are kept in the cache; “Resume download” carries on "
                "from there.")


def open_hub_dialog(panel) -> HubDialog:
    """The Models panel's one Hub dialog (kept, so a download outlives closing it), shown non-modal; a
    finished download joins the merge through the panel's add_models (the session's intent)."""
    dialog = getattr(panel, "hub_dialog", None)
    if dialog is None:
        def base() -> str | None:  # read when asked: opening a recipe replaces the session's state
            state = panel.document.state
            return state.base_model or next(iter(state.model_refs()), None)

        dialog = HubDialog(panel.settings, base, panel)
        dialog.model_ready.connect(lambda ref: (panel.recheck_unreadable(), panel.add_models([ref])))
        panel.hub_dialog = dialog
    dialog.show()
    dialog.raise_()
    return dialog
