"""Tools ▸ Extract LoRA: factor a fine-tune's change from its base into a PEFT adapter.

The dialog gathers the inputs and shows what engine.lora.extract_lora yields, run through a
JobRunner. A cancelled or failed run leaves no output folder: the engine writes into a temp folder
beside it and renames it only at the end. The adapter is offered to the merge only after a check
(on a worker) that it fits the merge's base; a rank far too low for the change is named, with the
rank that would keep 90% of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFormLayout,
    QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)
from superqt import QElidingLabel

from fusion_gui.events import Log, LoraModuleError, LoraResult, Progress
from fusion_gui.ui.dialogs.hub_cache_dialog import HubCacheDialog
from fusion_gui.formatting import format_bytes
from fusion_gui.ui.dialogs.lora_summary import ERROR_COLOUR, fit_check_job, format_error, rank_advice, summary_text
from fusion_gui.ui.hub.publish_dialog import PublishButton
from fusion_gui.ui.jobs import JobRunner, LatestJob
from fusion_gui.ui.panels.compare_panel import ModelPicker
from fusion_gui.ui.widgets.file_dialogs import ask_save_file
from fusion_gui.ui.worker import JobWorker

COLUMNS = ("Module", "Rank", "Relative error")
MergeTarget = Callable[[], "tuple[str | None, bool]"]  # the merge's base (None: no models) and vocab merged


def extract_job(finetune: str, base: str, out_dir: str, rank: int, threshold: float | None,
                device: str, force: bool, token):
    """The generator the worker runs (a module function so tests can wrap it)."""
    from fusion_gui.engine.lora import extract_lora

    return extract_lora(finetune, base, out_dir, rank, threshold, cancel=token, force=force, device=device)


class NumberItem(QTableWidgetItem):
    """A cell that shows a formatted number and sorts by the number itself."""

    def __init__(self, value: float, text: str):
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, NumberItem):
            return self.value < other.value
        return super().__lt__(other)


class CachedModelPicker(ModelPicker):
    """ModelPicker (a path or repo id, Browse…) plus a pick from the Hugging Face cache."""

    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(placeholder, parent)
        cache = QPushButton("From cache…")
        cache.setToolTip("A model already in the local Hugging Face cache; nothing is downloaded.")
        cache.clicked.connect(self._pick_from_cache)
        self.layout().addWidget(cache)

    def _pick_from_cache(self) -> None:
        dialog = HubCacheDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.selected_repos():
            self.set_text(dialog.selected_repos()[0])
        dialog.deleteLater()


class ExtractLoraDialog(QDialog):
    """Inputs, a Run/Cancel with progress, then the per-module error table and the adapter."""

    adapter_ready = Signal(str)  # "Add adapter to models": the adapter folder

    def __init__(self, known_models: Callable[[], list[str]] = lambda: [], parent: QWidget | None = None,
                 merge_target: MergeTarget = lambda: (None, False)):
        super().__init__(parent)
        self.setWindowTitle("Extract LoRA from a fine-tune")
        self.resize(820, 680)
        self.known_models = known_models
        self.merge_target = merge_target
        self.checked_target: tuple | None = None  # the merge target the adapter was last checked against
        self._add_when_it_fits = False
        self.result: LoraResult | None = None
        self.warnings: list[str] = []

        intro = QLabel("Each Linear weight's change from the base (fine-tune − base) is factored by "
                       "truncated SVD into a LoRA adapter B·A. peft loads the adapter folder, and the "
                       "Merge tab takes it as a model.", wordWrap=True)
        self.finetune = CachedModelPicker("The fine-tuned model: a folder or a cached repo id")
        self.base = CachedModelPicker("The model it was fine-tuned from")
        self.output = QLineEdit(placeholderText="A new folder for the adapter")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.pick_output)
        self.replace_box = QCheckBox("Replace if it exists")
        self.rank = QSpinBox(minimum=1, maximum=4096)
        self.rank.setValue(16)
        self.rank.setToolTip("The LoRA rank of every module (fewer where a module is smaller).")
        self.threshold = QDoubleSpinBox(minimum=0.0, maximum=0.99, decimals=3, singleStep=0.01)
        self.threshold.setSpecialValueText("off")
        self.threshold.setToolTip("Keep only singular values of at least this fraction of the largest: "
                                  "a module whose change is simpler gets a lower rank.")
        self.device = QComboBox()
        for label, value in (("Auto", "auto"), ("CPU", "cpu"), ("CUDA", "cuda")):
            self.device.addItem(label, value)

        self.run_button = QPushButton("Extract")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000, value=0)
        self.status_label = QElidingLabel("Choose the fine-tune, its base and an output folder, then Extract.")
        self.error_label = QLabel(wordWrap=True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.summary_label = QLabel(wordWrap=True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rank_warning = QLabel(wordWrap=True)
        self.rank_warning.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.rank_warning.hide()
        self.fit_label = QLabel(wordWrap=True)  # why the adapter is not offered to the merge
        self.fit_label.setStyleSheet(f"color: {ERROR_COLOUR};")
        self.fit_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fit_label.hide()
        self.output_label = QElidingLabel()
        self.output_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.add_button = QPushButton("Add adapter to models", enabled=False)
        self.add_button.setToolTip("Add the adapter folder as a model in the Merge tab.")
        self.add_button.clicked.connect(self.add_adapter)
        self.publish_button = PublishButton()  # shown once there is an adapter folder
        close = QPushButton("Close")
        close.clicked.connect(self.close)

        output_row = QHBoxLayout()
        output_row.addWidget(self.output, 1)
        output_row.addWidget(browse)
        output_row.addWidget(self.replace_box)
        settings_row = QHBoxLayout()
        settings_row.addWidget(self.rank)
        for label, widget in (("Singular-value threshold", self.threshold), ("Device", self.device)):
            settings_row.addSpacing(16)
            settings_row.addWidget(QLabel(label))
            settings_row.addWidget(widget)
        settings_row.addStretch(1)
        form = QFormLayout()
        form.addRow("Fine-tune", self.finetune)
        form.addRow("Base model", self.base)
        form.addRow("Output folder", output_row)
        form.addRow("Rank", settings_row)
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.progress_bar, 1)
        result_row = QHBoxLayout()
        result_row.addWidget(QLabel("Adapter:"))
        result_row.addWidget(self.output_label, 1)
        result_row.addWidget(self.add_button)
        result_row.addWidget(self.publish_button)
        result_row.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addLayout(run_row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.error_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.rank_warning)
        layout.addWidget(self.fit_label)
        layout.addLayout(result_row)
        self._inputs = (self.finetune, self.base, self.output, browse, self.replace_box, self.rank,
                        self.threshold, self.device)
        self.runner = JobRunner(
            self, start_button=self.run_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.status_label,
            handlers={Progress: self._on_progress, LoraModuleError: self._add_row, Log: self._on_log},
            on_finished=self._on_finished, on_failed=self._on_failed, on_cancelled=self._on_cancelled,
            on_done=lambda: self._set_running(False), error_dialog=False,
            cancelled_text="Cancelled; nothing was written.")
        self.fit_check = LatestJob(self)
        self.fit_check.result.connect(self._show_fit)
        self.fit_check.failed.connect(lambda summary, _details: self._show_fit(summary))

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    # --- API ---------------------------------------------------------------------------------

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        choices = list(dict.fromkeys(self.known_models()))
        self.finetune.set_choices(choices)
        self.base.set_choices(choices)
        if self.result is not None and self.add_button.text() != "Added to models":
            self.check_fit()  # the merge may have changed while the dialog was hidden
        super().showEvent(event)

    def set_inputs(self, finetune: str, base: str, out_dir: str) -> None:
        self.finetune.set_text(finetune)
        self.base.set_text(base)
        self.output.setText(str(out_dir))

    def start(self) -> JobWorker | None:
        """Check the form, then run the extraction on a worker thread; None when it cannot start."""
        if self.runner.running:
            return None
        finetune, base, out_dir = self.finetune.text(), self.base.text(), self.output.text().strip()
        force = self.replace_box.isChecked()
        if not (finetune and base and out_dir):
            self.show_error("Choose the fine-tune, its base model and an output folder.")
            return None
        if Path(out_dir).expanduser().exists() and not force:
            self.show_error(f"The output folder '{out_dir}' already exists; choose another or tick "
                            f"“Replace if it exists”.")
            return None
        rank, device = self.rank.value(), self.device.currentData()
        threshold = self.threshold.value() or None
        self.result, self.warnings = None, []
        self._clear_results()
        self._set_running(True)
        worker = self.runner.start(lambda token: extract_job(finetune, base, out_dir, rank, threshold, device,
                                                             force, token), "Opening the models…")
        return worker

    def cancel(self) -> None:
        self.runner.cancel()

    def check_fit(self, add_when_it_fits: bool = False) -> None:
        """Check on a worker whether the adapter fits the merge's base; Add is offered only if so."""
        if self.result is None:
            return
        self._add_when_it_fits = add_when_it_fits
        target = tuple(self.merge_target())
        self.checked_target = target
        self.add_button.setEnabled(False)
        self.add_button.setText("Checking against the merge…")
        adapter = self.result.out_dir
        self.fit_check.request(lambda _token: fit_check_job(adapter, *target))

    def add_adapter(self) -> None:
        if self.result is None:
            return
        if tuple(self.merge_target()) != self.checked_target:  # the merge changed since the check
            self.check_fit(add_when_it_fits=True)
            return
        self.adapter_ready.emit(self.result.out_dir)
        self.add_button.setEnabled(False)
        self.add_button.setText("Added to models")

    def pick_output(self) -> None:
        finetune = self.finetune.text()
        suggestion = f"{Path(finetune).name or 'model'}-lora-r{self.rank.value()}" if finetune else "adapter"
        start = str(Path(finetune).parent / suggestion) if Path(finetune).is_dir() else suggestion
        folder = ask_save_file(self, "Folder for the adapter", self.output.text() or start)
        if folder:
            self.output.setText(folder)

    def show_error(self, sentence: str, details: str = "") -> None:
        self.error_label.setText(sentence)
        self.error_label.setToolTip(details if details.strip() != sentence.strip() else "")
        self.error_label.setVisible(bool(sentence))

    def row_texts(self) -> list[tuple[str, str, str]]:
        """What the table shows, top to bottom: for tests and copying."""
        return [tuple(self.table.item(r, c).text() for c in range(len(COLUMNS)))
                for r in range(self.table.rowCount())]

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.cancel()  # the job stops at its next module and removes its temp folder
        super().closeEvent(event)

    def reject(self) -> None:  # Escape
        self.cancel()
        super().reject()

    # --- worker events -----------------------------------------------------------------------

    def _on_progress(self, event: Progress) -> str:
        return f"{event.tensors_done} / {event.tensors_total}: {event.current}"

    def _on_log(self, event: Log) -> str | None:
        if event.level == "warning":
            self.warnings.append(event.message)
            return None
        return event.message

    def _add_row(self, module: LoraModuleError) -> None:
        self.table.setSortingEnabled(False)  # a sorted table moves rows while they are filled
        row = self.table.rowCount()
        self.table.insertRow(row)
        name = QTableWidgetItem(module.name.removesuffix(".weight"))
        name.setToolTip(module.name)
        self.table.setItem(row, 0, name)
        self.table.setItem(row, 1, NumberItem(module.rank, str(module.rank)))
        self.table.setItem(row, 2, NumberItem(module.rel_error, format_error(module.rel_error)))
        self.table.setSortingEnabled(True)

    def _on_finished(self, result: LoraResult) -> None:
        self.result = result
        self._clear_results()
        for module in result.modules:  # the result is the record: the table shows exactly it
            self._add_row(module)
        self.status_label.setText(f"Done in {result.seconds:.1f} s: {format_bytes(result.bytes_written)} "
                                  f"of adapter weights.")
        self.summary_label.setText(summary_text(result, self.warnings))
        advice, far = rank_advice(result)
        self.rank_warning.setText(("⚠ " if far else "") + advice)
        self.rank_warning.setStyleSheet(f"color: {ERROR_COLOUR};" if far else "")
        self.rank_warning.setVisible(bool(advice))
        self.output_label.setText(result.out_dir)
        self.output_label.setToolTip(result.out_dir)
        self.publish_button.set_result(result.out_dir)
        self.check_fit()

    def _show_fit(self, reason: str | None) -> None:
        base = self.checked_target[0] if self.checked_target else None
        if reason:
            self.fit_label.setText(f"Not offered to the merge: the adapter does not fit its base {base}. {reason}")
            self.add_button.setText("Add adapter to models")
            self.add_button.setEnabled(False)
        else:
            self.fit_label.clear()
            self.add_button.setText("Add adapter to models")
            self.add_button.setEnabled(True)
            self.add_button.setFocus()  # the next step, most often
            if self._add_when_it_fits:  # the user pressed Add: checked again, it still fits
                self.add_adapter()
        self.fit_label.setVisible(bool(reason))

    def _on_failed(self, summary: str, details: str) -> None:
        self.status_label.setText("Failed; nothing was written.")
        self.show_error(summary, details)

    def _on_cancelled(self) -> None:
        self._clear_results()
        self.progress_bar.setValue(0)

    # --- view --------------------------------------------------------------------------------

    def _clear_results(self) -> None:
        self.table.setRowCount(0)
        self.summary_label.clear()
        self.rank_warning.hide()
        self.fit_label.hide()
        self.fit_check.cancel_pending()
        self.output_label.setText("—")
        self.show_error("")
        self.add_button.setEnabled(False)
        self.add_button.setText("Add adapter to models")
        self.publish_button.set_result(None)

    def _set_running(self, running: bool) -> None:
        for widget in self._inputs:
            widget.setEnabled(not running)

