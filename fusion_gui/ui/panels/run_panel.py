"""Where the merge goes and how it runs: output folder, dtype, shards, device, Run and Cancel.

Before Run, a pre-flight summary from plan_merge (headers only) says what will be written and
how much memory it needs; it runs on a worker after the edits settle, and only the newest answer
is shown. The merge runs through a JobRunner; this panel turns its events into a progress line and
a log, and re-emits them for the plots.

An existing output folder is never replaced without asking (naming it and its size), never when it
is, holds or lies inside one of the inputs, and the pre-flight says so before Run is pressed. While
a merge runs, the options it uses are locked (`busy_changed`): its plots and result always describe
the form as it is shown.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QPlainTextEdit,
    QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.merge.recipe import DTYPES
from fusion_gui.events import Log, MergeResult, PlanSummary, Progress, StepProgress
from fusion_gui.ui.widgets.verdict import VerdictView
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.formatting import format_bytes, format_duration
from fusion_gui.session.merge import MergeSession
from fusion_gui.session.output_folder import folder_bytes, fresh_folder, input_overlap
from fusion_gui.ui.panels.preflight import describe_plan, preflight_job
from fusion_gui.ui.dialogs.replace_dialog import ask_replace
from fusion_gui.ui.dialogs.leftovers import DELETE_LEFTOVERS, delete_leftovers, partial_lines
from fusion_gui.engine.hub.events import DownloadProgress
from fusion_gui.ui.hub.hub_text import download_text
from fusion_gui.ui.hub.merge_models import fetch_then
from fusion_gui.ui.hub.publish_dialog import PublishButton
from fusion_gui.ui.jobs import JobRunner, LatestJob
from fusion_gui.ui.settings import AppSettings
from fusion_gui.ui.widgets.file_dialogs import ask_save_file
from fusion_gui.ui.worker import JobWorker

SHARD_SIZES = ("5GB", "2GB", "1GB", "500MB")
PREFLIGHT_DELAY_MS = 400


def merge_job(recipe, out_dir: str, options, token):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.merge import merge

    return merge(recipe, out_dir, options, cancel=token)


NOTHING_TO_PLAN = "Add the models to merge (two or more), or press “Try the demo”; then choose an output folder."


class RunPanel(QWidget):
    event_received = Signal(object)  # every engine event, in order, for the plots
    run_started = Signal()
    merged = Signal(object)  # MergeResult
    preflight_shown = Signal(object)  # the PlanSummary shown, or None when the merge cannot run
    busy_changed = Signal(bool)  # a merge started (True) or ended: the form it uses is locked meanwhile
    message = Signal(str)

    def __init__(self, document: MergeSession, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.document, self.settings = document, settings
        self.last_result: MergeResult | None = None
        self.last_summary: PlanSummary | None = None

        self.output_combo = QComboBox(editable=True)
        self.output_combo.lineEdit().setPlaceholderText("A new folder for the merged model")
        self.output_combo.addItems(settings.recent_output_dirs)
        self.output_combo.setCurrentText("")
        self.output_combo.currentTextChanged.connect(self.schedule_preflight)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.pick_output)
        self.overwrite_box = QCheckBox("Replace if it exists")
        self.overwrite_box.toggled.connect(self.schedule_preflight)
        self.out_dtype_combo = QComboBox()
        self.out_dtype_combo.addItem("Same as compute", None)
        for dtype in DTYPES:
            self.out_dtype_combo.addItem(dtype, dtype)
        self.out_dtype_combo.currentIndexChanged.connect(self._out_dtype_edited)
        self.shard_combo = QComboBox(editable=True)
        self.shard_combo.addItems(SHARD_SIZES)
        self.shard_combo.currentTextChanged.connect(self.schedule_preflight)
        self.device_combo = QComboBox()
        for label, value in (("Auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda")):
            self.device_combo.addItem(label, value)
        self.device_combo.currentIndexChanged.connect(self.schedule_preflight)

        self.preflight_label = QLabel()
        self.preflight_label.setWordWrap(True)
        self.preflight_label.linkActivated.connect(self._on_link)  # a fresh folder name, or the leftovers' removal
        self.run_button = QPushButton("Run merge")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start_merge)
        self.cancel_button = QPushButton("Cancel")
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.progress_bar.setFormat("%p%")
        self.progress_label = QLabel("Idle.")
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.open_button = QPushButton("Open folder")
        self.open_button.setVisible(False)
        self.open_button.clicked.connect(self.open_output)
        self.publish_button = PublishButton()  # shown once there is a merged folder
        self.log_view = QPlainTextEdit(readOnly=True)
        self.log_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log_view.setMaximumBlockCount(5000)

        output_row = QHBoxLayout()
        output_row.addWidget(self.output_combo, 1)
        output_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Output folder", output_row)
        options = QHBoxLayout()
        for label, widget in (("dtype", self.out_dtype_combo), ("shards of", self.shard_combo),
                              ("device", self.device_combo)):
            options.addWidget(QLabel(label))
            options.addWidget(widget)
        options.addWidget(self.overwrite_box)
        options.addStretch(1)
        form.addRow("Output", options)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.progress_bar, 1)
        result_row = QHBoxLayout()
        result_row.addWidget(self.summary_label, 1)
        result_row.addWidget(self.open_button)
        result_row.addWidget(self.publish_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)  # above the pre-flight text: its warnings come and go below Run
        layout.addWidget(self.progress_label)
        layout.addLayout(result_row)
        self.verdict_view = VerdictView()  # the smoke check's verdict of the last merge
        layout.addWidget(self.verdict_view)
        layout.addWidget(self.preflight_label)
        layout.addStretch(1)  # spare height goes below everything: nothing above Run ever grows
        self._locked_while_running = (self.output_combo, browse, self.overwrite_box, self.out_dtype_combo,
                                      self.shard_combo, self.device_combo)

        self.runner = JobRunner(
            self, start_button=self.run_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.progress_label, every_event=self.event_received.emit,
            handlers={Progress: self._on_progress, StepProgress: self._on_step, Log: self._on_log,
                      PlanSummary: self._on_plan, DownloadProgress: lambda e: f"Downloading {e.repo_id}: {download_text(e)[0]}",
                      **self.verdict_view.handlers()},
            on_finished=self._on_finished, on_failed=self._on_failed, on_cancelled=self._on_cancelled,
            on_done=self._on_done, failure_title="Merge failed")
        self.runner.started.connect(lambda _: self.verdict_view.clear())
        self.preflight_runner = LatestJob(self, delay_ms=PREFLIGHT_DELAY_MS)
        self.preflight_runner.result.connect(self._show_plan)
        self.preflight_runner.failed.connect(self._show_plan_error)
        document.changed.connect(self._on_document_changed)
        self._on_document_changed(None)

    # --- options ---------------------------------------------------------------------------

    def output_dir(self) -> str:
        return self.output_combo.currentText().strip()

    def set_output_dir(self, folder: str) -> None:
        self.output_combo.setCurrentText(str(folder))

    def options(self):
        from fusion_gui.engine.merge import MergeOptions

        return MergeOptions(device=self.device_combo.currentData(),
                            out_shard_size=self.shard_combo.currentText().strip() or "5GB",
                            force=self.overwrite_box.isChecked())  # a wish: Run asks before it replaces

    def choose_fresh_output(self, wanted: str | Path) -> str:
        """Start a fresh output choice: `wanted`, or a new name beside it when it exists; never replace."""
        folder = str(fresh_folder(wanted))
        self.overwrite_box.setChecked(False)
        self.set_output_dir(folder)
        return folder

    def pick_output(self) -> None:
        folder = ask_save_file(self, "Output folder for the merged model", self.output_dir())
        if folder:
            self.set_output_dir(folder)

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    def _out_dtype_edited(self) -> None:
        self.document.set_out_dtype(self.out_dtype_combo.currentData(), origin=self)

    def _on_document_changed(self, origin: object) -> None:
        if origin is not self:
            self.out_dtype_combo.blockSignals(True)
            self.out_dtype_combo.setCurrentIndex(max(0, self.out_dtype_combo.findData(self.document.state.out_dtype)))
            self.out_dtype_combo.blockSignals(False)
        self.schedule_preflight()

    # --- pre-flight (a background job; the GUI thread plans nothing) ---------------------------

    def schedule_preflight(self, *_args) -> None:
        if not self._has_something_to_plan():
            return
        self.preflight_runner.schedule(self._preflight_factory)

    def preflight(self) -> JobWorker | None:
        """Plan now on a worker (the answer arrives as preflight_shown); None with nothing to plan."""
        if not self._has_something_to_plan():
            return None
        return self.preflight_runner.request(self._preflight_factory())

    def _has_something_to_plan(self) -> bool:
        if self.document.state.model_refs():
            return True
        self.preflight_runner.cancel_pending()  # an answer about models no longer there is stale
        self.last_summary = None
        self.preflight_label.setText(NOTHING_TO_PLAN)  # a first step, not an error
        return False

    def _preflight_factory(self):
        chosen = bool(self.output_dir())
        out_dir = self.output_dir() or str(Path(tempfile.gettempdir()) / "fusion-gui-preflight-unused")
        recipe, options = self.document.recipe(), self.options()
        refs, allowed = self.document.state.refs_base_first(), self.settings.allow_hub_downloads
        return lambda token: preflight_job(recipe, out_dir, options, chosen, token, refs, allowed)

    def _show_plan(self, answer: tuple) -> None:
        summary, text, warnings, fresh = answer
        lines = [_escape(line) for line in text.splitlines()]
        lines += [f"<span style='color:#8a5a00'>⚠ {_escape(w)}</span>" for w in warnings]
        if fresh:  # one click takes the suggested new folder
            lines[-1] += f" <a href='{_escape(fresh)}'>{_escape(fresh)}</a>"
        lines += partial_lines(summary.partial_folders) if summary is not None else []  # None: Hub models to fetch
        self.preflight_label.setText("<br>".join(lines))
        self.last_summary = summary
        self.preflight_shown.emit(summary)

    def _on_link(self, href: str) -> None:
        if href != DELETE_LEFTOVERS:
            self.set_output_dir(href)
        elif self.last_summary is not None and delete_leftovers(self, self.last_summary.partial_folders):
            self.schedule_preflight()

    def _show_plan_error(self, summary: str, details: str) -> None:
        engine_said = details.startswith(("InputError", "OutputError"))  # bad input, said in a sentence
        prefix = "Cannot run yet" if engine_said else "Pre-flight failed"
        self.preflight_label.setText(f"<span style='color:#b3261e'>{prefix}: {_escape(summary)}</span>")
        self.last_summary = None
        self.preflight_shown.emit(None)

    # --- running -----------------------------------------------------------------------------

    def start_merge(self) -> JobWorker | None:
        """Start the merge on a worker and return it (None when it cannot start)."""
        if self.runner.running:
            return None
        out_dir = self.output_dir()
        if not self.document.state.model_refs():
            show_error(self, "Add the models to merge first.")
            return None
        if not out_dir:
            show_error(self, "Choose an output folder for the merged model first.")
            return None
        replace = self._may_write(out_dir)
        if replace is None:
            return None  # refused or not confirmed: the last run's plots and result stay
        recipe, options = self.document.recipe(), dataclasses.replace(self.options(), force=replace)
        self.last_result = None
        self.open_button.setVisible(False)
        self.publish_button.set_result(None)
        self.summary_label.clear()
        self.log_view.clear()
        self.preflight_runner.cancel_pending()  # the running merge's own plan replaces the pre-flight
        self.preflight_label.setText("Planning the merge…")
        self.run_started.emit()
        refs, allowed = self.document.state.refs_base_first(), self.settings.allow_hub_downloads
        worker = self.runner.start(lambda token: fetch_then(refs, allowed, lambda: merge_job(recipe, out_dir, options, token),
                                                            token), f"Merging into {out_dir}…")
        self._set_busy(True)
        self.message.emit(f"Merging into {out_dir}…")
        return worker

    def _may_write(self, out_dir: str) -> bool | None:
        """False: a new folder; True: replace the existing one (the user said yes); None: do not run."""
        if not Path(out_dir).expanduser().exists():
            return False
        overlap = input_overlap(out_dir, self.document.state.model_refs())
        if overlap:
            show_error(self, overlap, title="Choose another output folder")
            return None
        if not self.overwrite_box.isChecked():
            show_error(self, f"Output folder '{out_dir}' already exists; choose a new one, for example "
                             f"'{fresh_folder(out_dir)}'.", title="Choose another output folder")
            return None
        return True if ask_replace(self, out_dir, folder_bytes(out_dir)) else None

    def _set_busy(self, busy: bool) -> None:
        for widget in self._locked_while_running:
            widget.setEnabled(not busy)
        self.busy_changed.emit(busy)

    def cancel(self) -> None:
        self.runner.cancel()

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _on_progress(self, event: Progress) -> str:
        eta = event.eta_s
        return (f"{event.tensors_done} / {event.tensors_total} tensors · {format_bytes(event.bytes_done)} of "
                f"{format_bytes(event.bytes_total)} · {format_duration(event.elapsed_s)} elapsed · ETA "
                f"{format_duration(eta) if eta is not None else '-'}")

    def _on_step(self, event: StepProgress) -> str:  # work before the tensors stream, e.g. a Fisher estimate
        return f"{event.stage} · step {event.done} of {event.total} · {format_duration(event.elapsed_s)}"

    def _on_log(self, event: Log) -> None:
        self.log(("⚠ " if event.level == "warning" else "") + event.message)

    def _on_plan(self, event: PlanSummary) -> None:
        text = describe_plan(event)[0]
        self.log(text)
        self.preflight_label.setText(_escape(text).replace("\n", "<br>"))

    def _on_finished(self, result: MergeResult) -> None:
        self.last_result = result
        self.summary_label.setText(
            f"Done in {format_duration(result.seconds)}: {format_bytes(result.bytes_written)} in "
            f"{result.shards} shard{'s' if result.shards != 1 else ''}, peak memory "
            f"{format_bytes(result.peak_bytes)} (this merge's own).\n{result.out_dir}")
        self.open_button.setVisible(True)
        self.publish_button.set_result(result.out_dir)
        self.verdict_view.show_verdict(result.smoke)
        self.settings.add_recent_output_dir(result.out_dir)
        self.message.emit(f"Merged into {result.out_dir}")
        self.merged.emit(result)

    def _on_failed(self, summary: str, details: str) -> None:
        self.log(f"Error: {summary}")
        self.message.emit(f"The merge failed: {summary}")

    def _on_cancelled(self) -> str:
        self.log("Cancelled by the user; the output folder was not created.")
        self.progress_bar.setValue(0)
        self.message.emit("Merge cancelled; nothing was written.")
        return "Cancelled; nothing was written."

    def _on_done(self) -> None:
        self._set_busy(False)
        self.schedule_preflight()

    def open_output(self) -> None:
        if self.last_result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.last_result.out_dir))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
