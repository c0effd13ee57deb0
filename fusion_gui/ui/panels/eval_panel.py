"""Evaluate: score models (perplexity, demo skills) in a table that saves as CSV, and compare their
completions of one prompt side by side, one column per model. The models live in the session's
EvalState; the work runs through a JobRunner. Scores shown are always for the models listed: a
change of the list clears them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QSizePolicy,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.evaluate.report import format_value, table, write_csv
from fusion_gui.engine.evaluate.demo import SKILLS
from fusion_gui.engine.evaluate.scoring import evaluate, model_labels
from fusion_gui.events import EvalResult, EvalRow, Generation, Log, StepProgress
from fusion_gui.session.tabs import EvalState
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.panels.task_eval_panel import TaskEvalPanel
from fusion_gui.ui.widgets.completions import CompletionsView
from fusion_gui.ui.widgets.file_dialogs import ask_folder, ask_open_file, ask_save_file
from fusion_gui.ui.worker import JobWorker


class EvalPanel(QWidget):
    message = Signal(str)
    evaluated = Signal(object)  # EvalResult, when a run finishes

    def __init__(self, state: EvalState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state if state is not None else EvalState()
        self.rows: list[EvalRow] = []
        self.run_models: list[str] = []  # the models of the run shown (or running)
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
        self.prompt_edit = QLineEdit(placeholderText="Optional: a prompt every model completes, side by side")
        self.run_button = QPushButton("Evaluate")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel", enabled=False)
        self.save_button = QPushButton("Save CSV…", enabled=False)
        self.save_button.clicked.connect(self._save_csv_dialog)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("")
        self.table = QTableWidget(0, 0)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        # as tall as its rows: the completions below get the rest of the view
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self._fit_table_height()
        self.generations = CompletionsView()

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
        layout.addWidget(self.table)
        layout.addWidget(self.generations, 1)
        self.tasks_panel = TaskEvalPanel(self.state)  # task files, lm-eval tasks, charts (task_eval_panel.py)
        layout.addWidget(self.tasks_panel)
        self.tasks_panel.message.connect(self.message)
        self.runner = JobRunner(
            self, start_button=self.run_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.status_label,
            handlers={StepProgress: lambda event: event.stage, EvalRow: self._on_row,
                      Generation: self._on_generation, Log: lambda event: self.message.emit(event.message)},
            on_finished=self._on_finished, failure_title="Evaluation failed")
        self.state.events.models.connect(self._show_models)
        self.state.events.models.connect(self._models_changed)
        self._show_models(self.state.models)
        # the settings widgets write the state as the user edits; start() reads the state
        if not self.state.tasks:
            self.state.tasks = tuple(SKILLS)
        for skill, box in self.task_boxes.items():
            box.setChecked(skill in self.state.tasks)
            box.toggled.connect(lambda _on: setattr(self.state, "tasks", tuple(
                s for s, b in self.task_boxes.items() if b.isChecked())))
        self.text_edit.setText(self.state.text_file)
        self.text_edit.textChanged.connect(lambda text: setattr(self.state, "text_file", text.strip()))
        self.prompt_edit.setText(self.state.prompt)
        self.prompt_edit.textChanged.connect(lambda text: setattr(self.state, "prompt", text))

    @property
    def worker(self) -> JobWorker | None:
        return self.runner.worker

    @property
    def models(self) -> list[str]:
        return self.state.models

    def set_models(self, refs: list[str]) -> None:
        """The models to evaluate, e.g. a merge's result followed by its inputs."""
        self.state.set_models(refs)

    def _show_models(self, models: list[str]) -> None:
        self.models_label.setText("Models: " + ", ".join(model_labels(models)) if models
                                  else "No models to evaluate yet.")

    def start(self) -> JobWorker | None:
        if self.runner.running:
            return None
        refs, tasks = list(self.models), tuple(self.state.tasks)
        text, prompt = self.state.text_file or None, self.state.prompt or None
        if not refs or not (tasks or text or prompt):
            show_error(self, "Add models and pick something to measure: a skill, a text file or a prompt.")
            return None
        self._clear_results()
        self.run_models = refs
        return self.runner.start(lambda token: evaluate(refs, text_file=text, tasks=tasks, prompt=prompt,
                                                        cancel=token), "Evaluating…")

    def cancel(self) -> None:
        self.runner.cancel()

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

    def _on_row(self, event: EvalRow) -> None:
        self.rows.append(event)
        self._fill_table()

    def _on_generation(self, event: Generation) -> None:
        self.generations.add(event)

    def _clear_results(self) -> None:
        self.rows, self.run_models = [], []
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(0)
        self._fit_table_height()
        self.generations.clear()
        self.save_button.setEnabled(False)

    def _models_changed(self, models: list[str]) -> None:
        """Scores and completions of other models must not stand beside this list: clear them
        (a run still going keeps its own; its end says they are for the earlier list)."""
        if self.runner.running or not (self.rows or self.generations.columns):
            return
        self._clear_results()
        self.status_label.setText("The models changed: press Evaluate to score them.")

    def _fit_table_height(self) -> None:
        rows = max(2, self.table.rowCount())
        self.table.setMaximumHeight(self.table.horizontalHeader().sizeHint().height() + 2 * self.table.frameWidth()
                                    + rows * self.table.verticalHeader().defaultSectionSize() + 4)

    def _fill_table(self) -> None:
        models, metrics, cells = table(tuple(self.rows))
        self.table.setRowCount(len(models))
        self.table.setColumnCount(len(metrics))
        self.table.setVerticalHeaderLabels(models)
        self.table.setHorizontalHeaderLabels([m if m == "perplexity" else f"{m} (exact match)" for m in metrics])
        for i, model in enumerate(models):
            for j, metric in enumerate(metrics):
                self.table.setItem(i, j, QTableWidgetItem(format_value(cells.get((model, metric)))))
        self._fit_table_height()

    def _on_finished(self, result: EvalResult) -> str:
        self.save_button.setEnabled(bool(self.rows))
        self.evaluated.emit(result)
        done = f"Evaluated {len(self.run_models)} model(s) in {result.seconds:.1f} s."
        if self.run_models != self.models:
            return done + " The models changed meanwhile: these results are for the earlier list."
        return done

    def _add_model_dialog(self) -> None:
        path = ask_folder(self, "A Hugging Face model folder to evaluate")
        if path:
            self.state.add_model(path)

    def _browse_text(self) -> None:
        path = ask_open_file(self, "Text file for perplexity", "", "Text (*.txt);;All files (*)")
        if path:
            self.text_edit.setText(path)

    def _save_csv_dialog(self) -> None:
        path = ask_save_file(self, "Save the evaluation table", "evaluation.csv", "CSV (*.csv)")
        if path:
            self.save_csv(path)
