"""History: every recorded run (merge, distillation, evaluation) in a table with search and sort by a
score; a run's recipe opens in the Merge tab, two recipes diff, a merge re-runs. Reads the session's
History (SQLite); a damaged file shows its notice here and never stops the app."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.engine.errors import InputError
from fusion_gui.formatting import format_bytes, format_duration
from fusion_gui.session.history import History, RunRecord
from fusion_gui.ui.dialogs.error_dialog import show_error
from fusion_gui.ui.dialogs.recipe_diff_dialog import RecipeDiffDialog, recipe_diff

COLUMNS = ("Kind", "When", "Output", "Scores", "Verdict", "Duration", "Peak memory")
NEWEST = "Newest first"


def score_text(run: RunRecord, limit: int = 4) -> str:
    parts = [f"{s.task + '/' if s.task else ''}{s.metric} {s.value:.3g}" for s in run.scores[:limit]]
    more = len(run.scores) - limit
    return ", ".join(parts) + (f" (+{more})" if more > 0 else "")


class HistoryPanel(QWidget):
    message = Signal(str)
    merge_requested = Signal(bool)  # a recipe was loaded into the Merge tab; True: re-run (clear the output)

    def __init__(self, document, history: History | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.document, self.history = document, history
        self.runs: list[RunRecord] = []
        self.notice_label = QLabel()
        self.notice_label.setWordWrap(True)
        self.notice_label.setStyleSheet("color: #b36b00")
        self.search_edit = QLineEdit(placeholderText="Search titles, recipes, outputs, input paths")
        self.search_edit.textChanged.connect(self.refresh)
        self.sort_combo = QComboBox()
        self.sort_combo.addItem(NEWEST, None)
        self.sort_combo.currentIndexChanged.connect(self.refresh)
        self.kind_combo = QComboBox()
        for text, kind in (("All runs", None), ("Merges", "merge"), ("Distillations", "distill"),
                           ("Evaluations", "eval"), ("Searches", "search")):
            self.kind_combo.addItem(text, kind)
        self.kind_combo.currentIndexChanged.connect(self.refresh)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for column in (2, 3):  # output and scores take the room
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.open_button = QPushButton("Open recipe in Merge")
        self.open_button.clicked.connect(lambda: self.open_selected(rerun=False))
        self.diff_button = QPushButton("Diff two recipes")
        self.diff_button.clicked.connect(self.diff_selected)
        self.rerun_button = QPushButton("Re-run")
        self.rerun_button.clicked.connect(lambda: self.open_selected(rerun=True))
        refresh_button = QPushButton("Refresh")
        refresh_button.clicked.connect(self.refresh)
        self.diff_dialog: RecipeDiffDialog | None = None

        bar = QHBoxLayout()
        bar.addWidget(self.search_edit, 1)
        bar.addWidget(self.kind_combo)
        bar.addWidget(QLabel("Sort by"))
        bar.addWidget(self.sort_combo)
        bar.addWidget(refresh_button)
        buttons = QHBoxLayout()
        for button in (self.open_button, self.diff_button, self.rerun_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.notice_label)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.refresh()

    # ---- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        notice = self.history.notice if self.history is not None else "Recording runs is turned off."
        if self.history is None:
            self.runs = []
        else:
            self.runs = self.history.runs(self.kind_combo.currentData(), self.search_edit.text().strip() or None,
                                          self.sort_combo.currentData())
        if not notice and not self.runs:
            notice = ("No runs match the search." if self.search_edit.text().strip() else
                      "No runs yet: every merge, distillation and task evaluation appears here when it ends.")
        self.notice_label.setText(notice or "")
        self.notice_label.setVisible(bool(notice))
        self._fill_sort_choices()
        self._fill_table()

    def showEvent(self, event) -> None:  # runs finished elsewhere appear when the tab is shown
        self.refresh()
        super().showEvent(event)

    def _fill_sort_choices(self) -> None:
        keys = sorted({f"{s.task}/{s.metric}" if s.task else s.metric for r in self.runs for s in r.scores})
        have = {self.sort_combo.itemData(i) for i in range(1, self.sort_combo.count())}
        self.sort_combo.blockSignals(True)
        for key in keys:
            if key not in have:
                self.sort_combo.addItem(key, key)
        self.sort_combo.blockSignals(False)

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.runs))
        for i, run in enumerate(self.runs):
            cells = (run.kind + ("" if run.status == "done" else f" ({run.status})"),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)),
                     run.output or run.title, score_text(run), run.verdict or "",
                     format_duration(run.seconds) if run.seconds is not None else "",
                     format_bytes(run.peak_bytes) if run.peak_bytes else "")
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if j == 0:
                    item.setData(Qt.ItemDataRole.UserRole, run.id)
                self.table.setItem(i, j, item)
        self._update_buttons()

    def selected(self) -> list[RunRecord]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.runs[r] for r in rows if r < len(self.runs)]

    def _update_buttons(self) -> None:
        chosen = self.selected()
        one_merge = len(chosen) == 1 and chosen[0].kind == "merge" and bool(chosen[0].recipe)
        one_search = len(chosen) == 1 and chosen[0].kind == "search" and bool(chosen[0].recipe)  # its best recipe
        self.open_button.setEnabled(one_merge or one_search)
        self.rerun_button.setEnabled(one_merge)
        self.diff_button.setEnabled(len(chosen) == 2 and all(r.recipe for r in chosen))

    # ---- actions ------------------------------------------------------------------------------
    def open_selected(self, rerun: bool = False) -> bool:
        """Load the selected merge's recipe into the Merge tab (all or nothing)."""
        from fusion_gui.engine.merge.recipe import load_recipe

        chosen = self.selected()
        if len(chosen) != 1 or not chosen[0].recipe:
            return False
        try:
            self.document.load_recipe(load_recipe(chosen[0].recipe))
        except InputError as err:
            show_error(self, str(err), title="Cannot open the run's recipe")
            return False
        self.message.emit(f"Loaded the recipe of run {chosen[0].id} ({chosen[0].title})"
                          + ("; choose a new output folder and Run." if rerun else "."))
        self.merge_requested.emit(rerun)
        return True

    def diff_selected(self) -> RecipeDiffDialog | None:
        chosen = self.selected()
        if len(chosen) != 2:
            return None
        older, newer = sorted(chosen, key=lambda r: (r.started, r.id))
        text = recipe_diff(older.recipe, newer.recipe, f"run {older.id} ({older.title})",
                           f"run {newer.id} ({newer.title})")
        self.diff_dialog = RecipeDiffDialog(text, self)
        self.diff_dialog.show()
        return self.diff_dialog

    def record_merge(self, result, recipe_text: str, models, base: str | None) -> threading.Thread | None:
        """Record a finished merge off the GUI thread (hashing the inputs reads them once)."""
        from fusion_gui.session.run_records import record_merge

        return self._record(record_merge, recipe_text, list(models), base, result.out_dir, result)

    def record_distill(self, result, config: dict) -> threading.Thread | None:
        """Record a finished distillation (its config as YAML) off the GUI thread."""
        import yaml

        from fusion_gui.session.run_records import record_distill

        return self._record(record_distill, yaml.safe_dump(config, sort_keys=False), str(config.get("teacher", "")),
                            str(config.get("student", "")), result.out_dir, result)

    def _record(self, record, *args) -> threading.Thread | None:
        if self.history is None:
            return None
        worker = threading.Thread(target=record, args=(self.history, *args), name="record-run")
        worker.start()
        return worker
