"""The chosen trial of a search and what can be done with it: open its recipe in the Merge view, write it,
or export the best recipe and every trial (CSV). Errors are one sentence, sent to the Search view."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from fusion_gui.engine.errors import InputError
from fusion_gui.session.search import SearchSession, TrialRow
from fusion_gui.ui.widgets.file_dialogs import ask_save_file


def scores_text(session: SearchSession, trial: TrialRow) -> str:
    """"perplexity 91.7, count 0 (held out: 90.3, 0)"."""
    parts = [f"{o} {v:.3g}" for o, v in zip(session.objectives, trial.scores) if v is not None]
    held = [f"{v:.3g}" for v in trial.held_out if v is not None]
    return ", ".join(parts) + (f" (held out: {', '.join(held)})" if held else "")


class TrialBar(QWidget):
    message = Signal(str)
    error = Signal(str)  # one sentence ("" clears it)
    merge_requested = Signal()  # a recipe was loaded into the Merge view: show it

    def __init__(self, session: SearchSession, merge=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.merge = session, merge
        self.selected: int | None = None
        self.selection_label = QLabel("A clicked point (double-clicked row) opens in Merge.")
        self.selection_label.setWordWrap(True)
        self.selection_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.open_button = QPushButton("Open in Merge", enabled=False)
        self.open_button.clicked.connect(lambda: self.selected is not None and self.open_in_merge(self.selected))
        self.write_button = QPushButton("Write recipe…", enabled=False)
        self.write_button.clicked.connect(lambda: self._ask_write(self.selected))
        self.best_button = QPushButton("Best recipe…")
        self.best_button.setToolTip("Write the best trial's recipe (the first objective's best).")
        self.best_button.clicked.connect(lambda: self._ask_write(None))
        self.csv_button = QPushButton("Trials CSV…")
        self.csv_button.setToolTip("Every trial: scores, held-out scores, parameters, seconds, worker.")
        self.csv_button.clicked.connect(self._ask_csv)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.selection_label, 1)
        for button in (self.open_button, self.write_button, self.best_button, self.csv_button):
            layout.addWidget(button)

    def select(self, number: int) -> None:
        trial = self.session.trials.get(number)
        if trial is None:
            return
        self.selected = number
        params = ", ".join(f"{k} {v:.3g}" for k, v in list(trial.params.items())[:6])
        self.selection_label.setText(f"Trial {number}: {scores_text(self.session, trial) or trial.state}. {params}")
        self.open_button.setEnabled(self.merge is not None)
        self.write_button.setEnabled(True)

    def open_in_merge(self, number: int) -> bool:
        """Load a trial's recipe into the Merge view (all or nothing) and show it."""
        if self.merge is None:
            return False
        try:
            self.merge.load_recipe(self.session.recipe_of(number))
        except InputError as err:
            self.error.emit(str(err))
            return False
        self.error.emit("")
        self.message.emit(f"Opened trial {number}'s recipe in the Merge view: Run writes it.")
        self.merge_requested.emit()
        return True

    def write_recipe(self, number: int | None, path: str | Path) -> Path | None:
        """Write a trial's recipe (the best one when `number` is None)."""
        if number is None:
            best = self.session.best()
            if best is None:
                self.error.emit("No trial has finished yet: there is no best recipe to write.")
                return None
            number = best.number
        try:
            written = self.session.write_recipe(number, path)
        except InputError as err:
            self.error.emit(str(err))
            return None
        self.message.emit(f"Wrote trial {number}'s recipe to {written}.")
        return written

    def write_csv(self, path: str | Path) -> Path | None:
        try:
            written = self.session.write_csv(path)
        except InputError as err:
            self.error.emit(str(err))
            return None
        self.message.emit(f"Wrote {len(self.session.trials)} trials to {written}.")
        return written

    def _ask_write(self, number: int | None) -> None:
        path = ask_save_file(self, "Write recipe", "recipe.yml", "Merge recipes (*.yml *.yaml)")
        if path:
            self.write_recipe(number, path)

    def _ask_csv(self) -> None:
        path = ask_save_file(self, "Export trials", "trials.csv", "CSV (*.csv)")
        if path:
            self.write_csv(path)
