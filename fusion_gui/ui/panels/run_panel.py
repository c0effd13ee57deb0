"""Where the merge goes and how it runs: output folder, dtype, shards, device, Run and Cancel.

Before Run, a pre-flight summary from plan_merge (headers only) says what will be written and
how much memory it needs; it runs on a worker after the edits settle, and only the newest answer
is shown. The merge runs through a JobRunner; this panel turns its events into a progress line and
a log, and re-emits them for the plots.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import psutil
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


def preflight_job(recipe, out_dir: str, options, output_chosen: bool, token):
    """Plan the merge (headers only) on the worker: (summary, text, warnings)."""
    from fusion_gui.engine.merge import plan_merge

    yield from ()
    plan = plan_merge(recipe, out_dir, options)
    try:
        text, warnings = describe_plan(plan.summary, output_chosen)
    finally:
        plan.close()
    return plan.summary, text, warnings


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


NOTHING_TO_PLAN = "Add the models to merge (two or more), or press “Try the demo”; then choose an output folder."


class RunPanel(QWidget):
    event_received = Signal(object)  # every engine event, in order, for the plots
    run_started = Signal()
    merged = Signal(object)  # MergeResult
    preflight_shown = Signal(object)  # the PlanSummary shown, or None when the merge cannot run
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
        self.verdict_view = VerdictView()  # the smoke check's verdict of the last merge
        layout.addWidget(self.verdict_view)

        self.runner = JobRunner(
            self, start_button=self.run_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.progress_label, every_event=self.event_received.emit,
            handlers={Progress: self._on_progress, StepProgress: self._on_step, Log: self._on_log,
                      PlanSummary: self._on_plan, **self.verdict_view.handlers()},
            on_finished=self._on_finished, on_failed=self._on_failed, on_cancelled=self._on_cancelled,
            on_done=self.schedule_preflight, failure_title="Merge failed")
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
                            force=self.overwrite_box.isChecked())

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
        return lambda token: preflight_job(recipe, out_dir, options, chosen, token)

    def _show_plan(self, answer: tuple) -> None:
        summary, text, warnings = answer
        lines = [_escape(line) for line in text.splitlines()]
        lines += [f"<span style='color:#8a5a00'>⚠ {_escape(w)}</span>" for w in warnings]
        self.preflight_label.setText("<br>".join(lines))
        self.last_summary = summary
        self.preflight_shown.emit(summary)

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
        recipe, options = self.document.recipe(), self.options()
        self.last_result = None
        self.open_button.setVisible(False)
        self.summary_label.clear()
        self.log_view.clear()
        self.run_started.emit()
        return self.runner.start(lambda token: merge_job(recipe, out_dir, options, token))

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
        self.log(describe_plan(event)[0])

    def _on_finished(self, result: MergeResult) -> None:
        self.last_result = result
        self.summary_label.setText(
            f"Done in {format_duration(result.seconds)}: {format_bytes(result.bytes_written)} in "
            f"{result.shards} shard{'s' if result.shards != 1 else ''}, peak memory "
            f"{format_bytes(result.peak_rss_bytes)}.\n{result.out_dir}")
        self.open_button.setVisible(True)
        self.verdict_view.show_verdict(result.smoke)
        self.settings.add_recent_output_dir(result.out_dir)
        self.message.emit(f"Merged into {result.out_dir}")
        self.merged.emit(result)

    def _on_failed(self, summary: str, details: str) -> None:
        self.log(f"Error: {summary}")

    def _on_cancelled(self) -> str:
        self.log("Cancelled by the user; the output folder was not created.")
        self.progress_bar.setValue(0)
        return "Cancelled; nothing was written."

    def open_output(self) -> None:
        if self.last_result is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.last_result.out_dir))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
