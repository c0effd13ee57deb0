"""Evaluate: score up to a few models (perplexity, demo skills) in a table that saves as CSV, and
compare their completions of one prompt side by side. The work runs on a JobWorker thread."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPlainTextEdit, QProgressBar,
    QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.evaluate.report import format_value, table, write_csv
from fusion_gui.engine.evaluate.demo import SKILLS
from fusion_gui.engine.evaluate.scoring import evaluate, model_labels
from fusion_gui.events import EvalResult, EvalRow, Generation, Log, StepProgress
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.worker import JobWorker


class EvalPanel(QWidget):
    message = Signal(str)
    evaluated = Signal(object)  # EvalResult, when a run finishes

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.models: list[str] = []
        self.worker: JobWorker | None = None
        self.rows: list[EvalRow] = []
        self.models_label = QLabel("No models to evaluate yet.")
        self.models_label.setWordWrap(True)
        add_button = QPushButton("Add model folder…")
        add_button.clicked.connect(self._add_model_dialog)
        clear_button = QPushButton("Clear")
        clear_button.clicked.connect(lambda: self.set_models([]))
        self.task_boxes = {skill: QCheckBox(f"{skill} skill") for skill in SKILLS}
        for box in self.task_boxes.values():
            box.setChecked(True)
        self.text_edit = QLineEdit(placeholderText="Optional: a text file for perplexity")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_text)
        self.prompt_edit = QLineEdit(placeholderText="Optional: a prompt for side-by-side completions (≤ 3 models)")
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button = QPushButton("Save CSV…", enabled=False)
        self.save_button.clicked.connect(self._save_csv_dialog)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("")
        self.table = QTableWidget(0, 0)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.generations = QPlainTextEdit(readOnly=True)
        self.generations.setPlaceholderText("Completions appear here, one block per model.")

        options = QHBoxLayout()
        for box in self.task_boxes.values():
            options.addWidget(box)
        options.addWidget(self.text_edit, 1)
        options.addWidget(browse)
        buttons = QHBoxLayout()
        for w in (self.run_button, self.cancel_button, self.save_button):
            buttons.addWidget(w)
        buttons.addWidget(self.progress_bar, 1)
        models_row = QHBoxLayout()
        models_row.addWidget(self.models_label, 1)
        models_row.addWidget(add_button)
        models_row.addWidget(clear_button)
        layout = QVBoxLayout(self)
        layout.addLayout(models_row)
        layout.addLayout(options)
        layout.addWidget(self.prompt_edit)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.generations, 1)

    def set_models(self, refs: list[str]) -> None:
        """The models to evaluate, e.g. a merge's result followed by its inputs."""
        self.models = [str(r) for r in refs]
        self.models_label.setText("Models: " + ", ".join(model_labels(self.models)) if self.models
                                  else "No models to evaluate yet.")

    def start(self) -> JobWorker | None:
        if self.worker is not None and self.worker.running:
            return None
        refs, tasks = list(self.models), tuple(s for s, b in self.task_boxes.items() if b.isChecked())
        text = self.text_edit.text().strip() or None
        prompt = self.prompt_edit.text() or None
        if not refs or not (tasks or text or prompt):
            show_error(self, "Add models and pick something to measure: a skill, a text file or a prompt.")
            return None
        worker = JobWorker(lambda token: evaluate(refs, text_file=text, tasks=tasks, prompt=prompt,
                                                  cancel=token), self)
        worker.event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(lambda: self.status_label.setText("Cancelled."))
        worker.done.connect(self._on_done)
        self.worker, self.rows = worker, []
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self.generations.clear()
        self.progress_bar.setValue(0)
        self.status_label.setText("Evaluating…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.save_button.setEnabled(False)
        worker.start()
        return worker

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def save_csv(self, path: str) -> None:
        write_csv(tuple(self.rows), path)
        self.message.emit(f"Saved the evaluation table to {path}.")

    def cell_text(self, model: str, metric: str) -> str | None:
        """What the table shows for one model and metric (None when absent): for tests and copy."""
        models, metrics, _ = table(tuple(self.rows))
        if model not in models or metric not in metrics:
            return None
        item = self.table.item(models.index(model), metrics.index(metric))
        return item.text() if item is not None else None

    def _on_event(self, event: object) -> None:
        if isinstance(event, StepProgress):
            self.progress_bar.setValue(int(event.fraction * 1000))
            self.status_label.setText(event.stage)
        elif isinstance(event, EvalRow):
            self.rows.append(event)
            self._fill_table()
        elif isinstance(event, Generation):
            self.generations.appendPlainText(f"[{event.model} · {event.mode}]\n{event.prompt}{event.text}\n")
        elif isinstance(event, Log):
            self.message.emit(event.message)

    def _fill_table(self) -> None:
        models, metrics, cells = table(tuple(self.rows))
        self.table.setRowCount(len(models))
        self.table.setColumnCount(len(metrics))
        self.table.setVerticalHeaderLabels(models)
        self.table.setHorizontalHeaderLabels([m if m == "perplexity" else f"{m} (exact match)" for m in metrics])
        for i, model in enumerate(models):
            for j, metric in enumerate(metrics):
                self.table.setItem(i, j, QTableWidgetItem(format_value(cells.get((model, metric)))))

    def _on_finished(self, result: EvalResult) -> None:
        self.progress_bar.setValue(1000)
        self.status_label.setText(f"Evaluated {len(self.models)} model(s) in {result.seconds:.1f} s.")
        self.save_button.setEnabled(bool(self.rows))
        self.evaluated.emit(result)

    def _on_failed(self, summary: str, details: str) -> None:
        self.status_label.setText(f"Failed: {summary}")
        show_error(self, summary, details, "Evaluation failed")

    def _on_done(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _add_model_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "A Hugging Face model folder to evaluate")
        if path and path not in self.models:
            self.set_models([*self.models, path])

    def _browse_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Text file for perplexity", "", "Text (*.txt);;All files (*)")
        if path:
            self.text_edit.setText(path)

    def _save_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the evaluation table", "evaluation.csv", "CSV (*.csv)")
        if path:
            self.save_csv(path)
