"""Evaluate on tasks: the chosen task files and lm-eval tasks for every model, through the history's
score cache (an unchanged model is answered at once, marked "cached"). The first model is the one
judged (the merge); the table adds its delta against the best input, and the charts put base,
inputs and merge side by side: grouped bars with 95% intervals, a radar from three scores on."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QSplitter, QTableWidget, QTableWidgetItem,
    QToolButton, QVBoxLayout, QWidget,
)

from fusion_gui.engine.evaluate.report import format_value, is_perplexity
from fusion_gui.events import EvalResult, EvalRow, Log, StepProgress
from fusion_gui.session.evaluation import EvalOptions, evaluate_models
from fusion_gui.session.score_compare import Comparison, compare
from fusion_gui.session.tabs import EvalState
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.jobs import JobRunner
from fusion_gui.ui.panels.task_chooser import TaskChooser
from fusion_gui.ui.plots.score_bars import ScoreBars
from fusion_gui.ui.plots.score_radar import ScoreRadar
from fusion_gui.ui.widgets.file_dialogs import ask_save_file

CACHED_NOTE = "scores from the history"  # what evaluate_cached's Log says when it answers from the cache
DELTA_ROW = "Δ vs best input"


def evaluation_job(refs, tasks, specs, history, token):
    """evaluate_models, then the run recorded in the history (a history problem never fails it)."""
    options = EvalOptions()
    result = yield from evaluate_models(refs, tasks, history, options, token)
    if history is not None:
        from fusion_gui.session.run_records import record_eval

        record_eval(history, refs, specs, result.rows, "done", result.seconds, hashes=options.hashes)
    return result


class TaskEvalPanel(QWidget):
    message = Signal(str)
    evaluated = Signal(object)  # EvalResult

    def __init__(self, state: EvalState, history=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self._history = history  # None: the user's history, opened at the first run
        self.rows: list[EvalRow] = []
        self.cached: set[str] = set()  # model labels answered from the score cache
        self.comparison = compare(())
        self.chooser = TaskChooser(state)
        self.chooser.message.connect(self.message)
        self.run_button = QPushButton("Evaluate on tasks")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.png_button = QPushButton("Save charts PNG…", enabled=False)
        self.png_button.clicked.connect(self._save_png_dialog)
        self.csv_button = QPushButton("Save scores CSV…", enabled=False)
        self.csv_button.clicked.connect(self._save_csv_dialog)
        self.progress_bar = QProgressBar(minimum=0, maximum=1000)
        self.status_label = QLabel("")
        self.table = QTableWidget(0, 0)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.bars = ScoreBars()
        self.radar = ScoreRadar()
        self.radar.setVisible(False)
        self.charts = QSplitter(Qt.Orientation.Horizontal)
        self.charts.addWidget(self.bars)
        self.charts.addWidget(self.radar)
        self.charts.setStretchFactor(0, 3)
        self.charts.setStretchFactor(1, 2)

        buttons = QHBoxLayout()
        for w in (self.run_button, self.cancel_button, self.png_button, self.csv_button):
            buttons.addWidget(w)
        buttons.addWidget(self.progress_bar, 1)
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.table)
        results.addWidget(self.charts)
        self.table.setMinimumHeight(100)  # a few models and the delta row, scrolling beyond
        results.setSizes([160, 260])
        # folded until asked for (or a task is chosen): the skills and completions above keep their room
        self.toggle = QToolButton(text="Tasks and benchmarks: task files, lm-eval, charts", checkable=True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.toggled.connect(self.set_expanded)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.chooser)
        body.addLayout(buttons)
        body.addWidget(self.status_label)
        body.addWidget(results, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body, 1)
        self.set_expanded(bool(state.task_specs))
        state.events.task_specs.connect(lambda specs: specs and self.set_expanded(True))
        self.runner = JobRunner(
            self, start_button=self.run_button, cancel_button=self.cancel_button, progress_bar=self.progress_bar,
            status_label=self.status_label,
            handlers={StepProgress: lambda event: event.stage, EvalRow: self._on_row, Log: self._on_log},
            on_finished=self._on_finished, failure_title="Evaluation failed",
            cancelled_text="Cancelled: nothing from this run was cached.")

    def set_expanded(self, on: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(on)
        self.toggle.blockSignals(False)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)

    @property
    def history(self):
        if self._history is None:
            from fusion_gui.session.run_records import open_history

            self._history = open_history()
        return self._history

    @history.setter
    def history(self, value) -> None:
        self._history = value

    def start(self):
        if self.runner.running:
            return None
        refs, specs = list(self.state.models), tuple(self.state.task_specs)
        if not refs or not specs:
            show_error(self, "Add models and at least one task (a task file or an lm-eval task) to evaluate.")
            return None
        try:
            tasks = self.chooser.tasks()
        except Exception as err:  # InputError, or a task file that changed on disk since it was added
            show_error(self, str(err), title="Cannot use the task")
            return None
        self.rows, self.cached = [], set()
        self._fill()
        history = self.history
        return self.runner.start(lambda token: evaluation_job(refs, tasks, specs, history, token), "Evaluating…")

    # ---- events -------------------------------------------------------------------------------
    def _on_row(self, event: EvalRow) -> None:
        self.rows.append(event)
        self._fill_table()

    def _on_log(self, event: Log) -> str:
        if CACHED_NOTE in event.message:
            self.cached.add(event.message.split(":", 1)[0])
        return event.message

    def _on_finished(self, result: EvalResult) -> str:
        self.rows = list(result.rows)
        self._fill()
        self.evaluated.emit(result)
        cached = [m for m in self.comparison.models if m in self.cached]
        note = f" ({len(cached)} cached: {', '.join(cached)})" if cached else ""
        return f"Evaluated {len(self.comparison.models)} model(s) in {result.seconds:.1f} s{note}."

    # ---- showing ------------------------------------------------------------------------------
    def _fill(self) -> None:
        self._fill_table()
        self.bars.set_comparison(self.comparison)
        self.radar.set_comparison(self.comparison)
        self.png_button.setEnabled(bool(self.rows))
        self.csv_button.setEnabled(bool(self.rows))

    def _fill_table(self) -> None:
        c = self.comparison = compare(tuple(self.rows))
        has_delta = len(c.models) > 1
        self.table.setRowCount(len(c.models) + has_delta)
        self.table.setColumnCount(len(c.metrics))
        self.table.setHorizontalHeaderLabels(c.metrics)
        self.table.setVerticalHeaderLabels([m + (" (cached)" if m in self.cached else "") for m in c.models]
                                           + ([DELTA_ROW] if has_delta else []))
        for i, model in enumerate(c.models):
            for j, metric in enumerate(c.metrics):
                item = QTableWidgetItem(self.cell(c, model, metric))
                self.table.setItem(i, j, item)
        if has_delta:
            for j, metric in enumerate(c.metrics):
                delta = c.delta(c.models[0], metric)
                item = QTableWidgetItem("-" if delta is None else self.delta_text(metric, delta))
                if delta is not None and delta != 0:
                    better = (delta < 0) if is_perplexity(metric) else (delta > 0)
                    item.setForeground(QColor("#3a7d44" if better else "#c0392b"))
                self.table.setItem(len(c.models), j, item)

    @staticmethod
    def cell(c: Comparison, model: str, metric: str) -> str:
        row = c.cells.get((model, metric))
        text = format_value(row)
        span = c.interval(model, metric)
        return text + (f" [{100 * span[0]:.0f}–{100 * span[1]:.0f}]" if span else "")

    @staticmethod
    def delta_text(metric: str, delta: float) -> str:
        return f"{delta:+.2f}" if is_perplexity(metric) else f"{100 * delta:+.1f} pts"

    def cell_text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return item.text() if item is not None else ""

    # ---- export -------------------------------------------------------------------------------
    def save_png(self, path: str) -> None:
        self.charts.grab().save(path)
        self.message.emit(f"Saved the charts to {path}.")

    def save_csv(self, path: str) -> None:
        self.comparison.write_csv(path)
        self.message.emit(f"Saved the scores to {path}.")

    def _save_png_dialog(self) -> None:
        path = ask_save_file(self, "Save the charts", "scores.png", "PNG (*.png)")
        if path:
            self.save_png(path)

    def _save_csv_dialog(self) -> None:
        path = ask_save_file(self, "Save the scores", "scores.csv", "CSV (*.csv)")
        if path:
            self.save_csv(path)



