"""Where the merge goes and how it runs: output folder, dtype, shards, device, Run and Cancel.

Before Run, a pre-flight summary from plan_merge (headers only) says what will be written and
how much memory it needs. The merge itself runs on a JobWorker; this panel turns its events
into a progress bar and a log, and re-emits them for the plots.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPlainTextEdit,
    QProgressBar, QPushButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import DTYPES
from fusion_gui.events import Log, MergeResult, PlanSummary, Progress, StepProgress
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.formatting import format_bytes, format_duration
from fusion_gui.ui.merge_state import MergeDocument
from fusion_gui.ui.settings import AppSettings
from fusion_gui.ui.worker import JobWorker

SHARD_SIZES = ("5GB", "2GB", "1GB", "500MB")
PREFLIGHT_DELAY_MS = 400


def merge_job(recipe, out_dir: str, options, token):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.merge import merge

    return merge(recipe, out_dir, options, cancel=token)


def free_memory(device: str) -> tuple[int, int | None]:
    """(free RAM, free GPU memory or None) in bytes."""
    ram = psutil.virtual_memory().available
    gpu = None
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.mem_get_info()[0]
        except Exception:  # no usable CUDA: the RAM figure is what counts
            gpu = None
    return ram, gpu


def describe_plan(summary: PlanSummary, output_chosen: bool = True) -> tuple[str, list[str]]:
    """The pre-flight text and the warnings to show beside it."""
    text = (f"Writes {summary.tensors} tensors ({format_bytes(summary.output_bytes)}, {summary.out_dtype}) "
            f"in {summary.shards} shard{'s' if summary.shards != 1 else ''}, {summary.num_layers} layers, "
            f"on {summary.device}. Estimated peak memory {format_bytes(summary.estimated_peak_bytes)}.")
    for note in summary.notes:  # work before the merge proper, e.g. estimating Fishers
        text += f"\n{note}"
    warnings = list(summary.warnings)
    ram, gpu = free_memory(summary.device)
    if summary.estimated_peak_bytes > ram:
        warnings.append(f"The estimated peak memory is more than the {format_bytes(ram)} of free RAM.")
    if gpu is not None and summary.estimated_peak_bytes > gpu:
        warnings.append(f"The estimated peak memory is more than the {format_bytes(gpu)} of free GPU memory.")
    if not output_chosen:
        warnings.append("Choose an output folder.")
    return text, warnings


class RunPanel(QWidget):
    event_received = Signal(object)  # every engine event, in order, for the plots
    run_started = Signal()
    message = Signal(str)

    def __init__(self, document: MergeDocument, settings: AppSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.document, self.settings = document, settings
        self.worker: JobWorker | None = None
        self.last_result: MergeResult | None = None

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
        self.run_button = QPushButton("Run merge")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start_merge)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.progress_bar.setFormat("%p%")
        self.progress_label = QLabel("Idle.")
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.open_button = QPushButton("Open folder")
        self.open_button.setVisible(False)
        self.open_button.clicked.connect(self.open_output)
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.preflight_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_label)
        layout.addLayout(result_row)

        self._preflight_timer = QTimer(self, singleShot=True, interval=PREFLIGHT_DELAY_MS)
        self._preflight_timer.timeout.connect(self.preflight)
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
                            force=self.overwrite_box.isChecked())

    def pick_output(self) -> None:
        folder, _ = QFileDialog.getSaveFileName(self, "Output folder for the merged model", self.output_dir())
        if folder:
            self.set_output_dir(folder)

    def _out_dtype_edited(self) -> None:
        self.document.state.out_dtype = self.out_dtype_combo.currentData()
        self.document.notify(self)

    def _on_document_changed(self, origin: object) -> None:
        if origin is not self:
            self.out_dtype_combo.blockSignals(True)
            self.out_dtype_combo.setCurrentIndex(max(0, self.out_dtype_combo.findData(self.document.state.out_dtype)))
            self.out_dtype_combo.blockSignals(False)
        self.schedule_preflight()

    # --- pre-flight ------------------------------------------------------------------------

    def schedule_preflight(self, *_args) -> None:
        self._preflight_timer.start()

    def preflight(self) -> PlanSummary | None:
        """Plan the merge (headers only) and say what it will write; None when it cannot run."""
        from fusion_gui.engine.merge import plan_merge

        self._preflight_timer.stop()
        chosen = bool(self.output_dir())
        out_dir = self.output_dir() or str(Path(tempfile.gettempdir()) / "fusion-gui-preflight-unused")
        try:
            plan = plan_merge(self.document.recipe(), out_dir, self.options())
        except InputError as err:
            self.preflight_label.setText(f"<span style='color:#b3261e'>Cannot run yet: {_escape(str(err))}</span>")
            return None
        except Exception as err:  # a pre-flight must never take the window down
            self.preflight_label.setText(f"<span style='color:#b3261e'>Pre-flight failed: {_escape(str(err))}</span>")
            return None
        try:
            text, warnings = describe_plan(plan.summary, chosen)
        finally:
            plan.close()
        lines = [_escape(line) for line in text.splitlines()]
        lines += [f"<span style='color:#8a5a00'>⚠ {_escape(w)}</span>" for w in warnings]
        self.preflight_label.setText("<br>".join(lines))
        return plan.summary

    # --- running -----------------------------------------------------------------------------

    def start_merge(self) -> JobWorker | None:
        """Start the merge on a worker and return it (None when it cannot start)."""
        if self.worker is not None and self.worker.running:
            return None
        out_dir = self.output_dir()
        if not out_dir:
            show_error(self, "Choose an output folder for the merged model first.")
            return None
        recipe, options = self.document.recipe(), self.options()
        worker = JobWorker(lambda token: merge_job(recipe, out_dir, options, token), self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        worker.done.connect(self._on_done)
        self.worker, self.last_result = worker, None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.open_button.setVisible(False)
        self.summary_label.clear()
        self.progress_bar.setValue(0)
        self.progress_label.setText("Starting…")
        self.log_view.clear()
        self.run_started.emit()
        worker.start()
        return worker

    def cancel(self) -> None:
        if self.worker is not None and self.worker.running:
            self.worker.cancel()
            self.progress_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(text)

    def _on_event(self, event: object) -> None:
        if isinstance(event, Progress):
            self.progress_bar.setValue(int(event.fraction * 1000))
            eta = event.eta_s
            self.progress_label.setText(
                f"{event.tensors_done} / {event.tensors_total} tensors · {format_bytes(event.bytes_done)} of "
                f"{format_bytes(event.bytes_total)} · {format_duration(event.elapsed_s)} elapsed · ETA "
                f"{format_duration(eta) if eta is not None else '-'}")
        elif isinstance(event, StepProgress):  # work before the tensors stream, e.g. a Fisher estimate
            self.progress_bar.setValue(int(event.fraction * 1000))
            self.progress_label.setText(f"{event.stage} · step {event.done} of {event.total} · "
                                        f"{format_duration(event.elapsed_s)}")
        elif isinstance(event, Log):
            self.log(("⚠ " if event.level == "warning" else "") + event.message)
        elif isinstance(event, PlanSummary):
            self.log(describe_plan(event)[0])
        self.event_received.emit(event)

    def _on_finished(self, result: MergeResult) -> None:
        self.last_result = result
        self.progress_bar.setValue(1000)
        self.summary_label.setText(
            f"Done in {format_duration(result.seconds)}: {format_bytes(result.bytes_written)} in "
            f"{result.shards} shard{'s' if result.shards != 1 else ''}, peak memory "
            f"{format_bytes(result.peak_bytes)} (this merge's own).\n{result.out_dir}")
        self.open_button.setVisible(True)
        self.settings.add_recent_output_dir(result.out_dir)
        self.message.emit(f"Merged into {result.out_dir}")

    def _on_failed(self, summary: str, details: str) -> None:
        self.progress_label.setText("Failed.")
        self.log(f"Error: {summary}")
        show_error(self, summary, details, "Merge failed")

    def _on_cancelled(self) -> None:
        self.progress_label.setText("Cancelled; nothing was written.")
        self.log("Cancelled by the user; the output folder was not created.")
        self.progress_bar.setValue(0)

    def _on_done(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.schedule_preflight()

    def open_output(self) -> None:
        if self.last_result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.last_result.out_dir))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
