"""“Publish to the Hub…”: upload a result folder (a merge, a distillation, a LoRA adapter) to a Hub repo.

The user names the repo, whether it is private and the branch; the dialog previews the model card's
front matter the Hub reads (base_model, base_model_relation, license, tags, eval results) before anything
is sent. The upload is a JobRunner job with progress and Cancel; the repo's URL is shown at the end."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
    QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.hub.events import UploadProgress
from fusion_gui.ui.hub.line import Line
from fusion_gui.ui.hub.hub_text import OFFLINE_SET, card_preview_job, fraction, hub_offline, publish_job, upload_text
from fusion_gui.ui.jobs import JobRunner, LatestJob

ERROR_STYLE = "color: #b3261e;"


class PublishDialog(QDialog):
    published = Signal(str)  # the repo's URL

    def __init__(self, out_dir: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Publish to the Hugging Face Hub")
        self.resize(640, 560)
        self.out_dir = out_dir  # what it is (merge, distillation, adapter) the engine reads from the folder
        self.url: str | None = None

        self.folder_label = QLabel(f"Uploads the folder {out_dir}", wordWrap=True)
        self.repo_edit = QLineEdit(placeholderText="org/name")
        self.repo_edit.textChanged.connect(self._update_controls)
        self.private_box = QCheckBox("Private repository", checked=True)
        self.revision_edit = QLineEdit(placeholderText="main")
        self.license_edit = QLineEdit(placeholderText="as the model card says, e.g. apache-2.0")
        self.license_edit.textChanged.connect(self.refresh_preview)
        self.preview = QPlainTextEdit(readOnly=True)
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.preview.setPlaceholderText("Reading the model card…")
        self.publish_button = QPushButton("Publish")
        self.publish_button.setDefault(True)
        self.publish_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel upload")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000, textVisible=False)
        self.status_label = Line()
        self.url_label = Line(rich=True)
        self.error_label = Line(style=ERROR_STYLE)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Repository", self.repo_edit)
        form.addRow("Branch", self.revision_edit)
        form.addRow("License", self.license_edit)
        form.addRow("", self.private_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.publish_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress_bar, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.folder_label)
        layout.addLayout(form)
        layout.addWidget(QLabel("Model card front matter (what the Hub reads):"))
        layout.addWidget(self.preview, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.url_label)
        layout.addWidget(self.error_label)
        layout.addWidget(close)

        self.preview_job = LatestJob(self, delay_ms=300)
        self.preview_job.result.connect(self.preview.setPlainText)
        self.preview_job.failed.connect(lambda summary, _d: self.preview.setPlainText(f"No model card: {summary}"))
        self.preview_job.request(lambda token: card_preview_job(out_dir, None, token))
        self.runner = JobRunner(
            self, start_button=self.publish_button, cancel_button=self.cancel_button,
            progress_bar=self.progress_bar, status_label=self.status_label, handlers={UploadProgress: self._on_progress},
            on_finished=self._on_finished, on_failed=lambda summary, _d: self.error_label.setText(summary),
            on_cancelled=lambda: "Upload cancelled: nothing was committed; the Hub keeps the large files already "
                                 "sent, so the next try skips them.",
            on_done=self._update_controls, failure_title="Publishing failed", error_dialog=False)
        self._update_controls()

    def license(self) -> str | None:
        return self.license_edit.text().strip() or None

    def refresh_preview(self, *_args) -> None:
        license = self.license()
        self.preview_job.schedule(lambda: (lambda token: card_preview_job(self.out_dir, license, token)))

    def start(self):
        """Upload now; returns the worker, or None when refused (one sentence in the dialog)."""
        repo_id = self.repo_edit.text().strip()
        refusal = OFFLINE_SET if hub_offline() else (None if repo_id else "Enter the repo to publish to, "
                                                     "such as “your-name/my-merge”.")
        if refusal:
            self.error_label.setText(refusal)
            return None
        self.error_label.clear()
        self.url_label.clear()
        self.url = None
        private, revision, license = self.private_box.isChecked(), self.revision_edit.text().strip() or None, self.license()
        worker = self.runner.start(lambda token: publish_job(self.out_dir, repo_id, private, revision, license, token),
                                   f"Publishing to {repo_id}…")
        self._update_controls()
        return worker

    def _update_controls(self, *_args) -> None:
        running = self.runner.running if hasattr(self, "runner") else False
        for widget in (self.repo_edit, self.private_box, self.revision_edit, self.license_edit):
            widget.setEnabled(not running)
        self.publish_button.setEnabled(bool(self.repo_edit.text().strip()) and not running)

    def _on_progress(self, event: UploadProgress) -> str:
        self.progress_bar.setValue(int(1000 * fraction(event.done, event.total)))
        return upload_text(event)

    def _on_finished(self, url) -> str:
        self.url = str(url)
        self.url_label.setText(f"On the Hub: <a href='{self.url}'>{self.url}</a>")
        self.published.emit(self.url)
        return "Published."


class PublishButton(QPushButton):
    """“Publish to the Hub…” beside a result: hidden until there is a result folder to publish."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Publish to the Hub…", parent)
        self.out_dir: str | None = None
        self.dialog: PublishDialog | None = None
        self.setVisible(False)
        self.clicked.connect(self.open_dialog)

    def set_result(self, out_dir: str | None) -> None:
        self.out_dir = str(out_dir) if out_dir else None
        self.setVisible(self.out_dir is not None)

    def open_dialog(self) -> PublishDialog | None:
        if self.out_dir is None:
            return None
        if self.dialog is None or self.dialog.out_dir != self.out_dir:
            if self.dialog is not None and not self.dialog.runner.running:
                self.dialog.deleteLater()
            self.dialog = PublishDialog(self.out_dir, self)
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog
