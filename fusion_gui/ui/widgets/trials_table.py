"""The trials of a search as a table sortable by any column (QAbstractTableModel behind a
QSortFilterProxyModel). Rows are appended or updated in place as trials arrive: the view is never
rebuilt per trial. Numbers sort as numbers (the sort role holds the value, not its text)."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from fusion_gui.session.search import TrialRow

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NUMBER_ROLE = Qt.ItemDataRole.UserRole + 2  # the trial number of a row, whatever the column


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class TrialsModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[TrialRow] = []
        self._row_of: dict[int, int] = {}
        self.objectives: list[str] = []
        self.param_keys: list[str] = []
        self._columns_key: tuple | None = None
        self._columns: list[str] = []

    # --- columns ---------------------------------------------------------------------------
    def columns(self) -> list[str]:
        """The headers; kept until the objectives or parameters change (Qt asks for the count per cell)."""
        key = (tuple(self.objectives), tuple(self.param_keys))
        if key != self._columns_key:
            self._columns_key = key
            self._columns = ["Trial", "State", *self.objectives, *(f"{o} (held out)" for o in self.objectives),
                             *self.param_keys, "Seconds", "Worker"]
        return self._columns

    def _value(self, row: TrialRow, column: int):
        n_obj, n_par = len(self.objectives), len(self.param_keys)
        if column == 0:
            return row.number
        if column == 1:
            return f"{row.state}: {row.error}" if row.error else row.state
        column -= 2
        if column < n_obj:
            return row.scores[column] if column < len(row.scores) else None
        column -= n_obj
        if column < n_obj:
            return row.held_out[column] if column < len(row.held_out) else None
        column -= n_obj
        if column < n_par:
            return row.params.get(self.param_keys[column])
        return row.seconds if column == n_par else row.worker

    # --- updates ---------------------------------------------------------------------------
    def set_objectives(self, objectives: list[str]) -> None:
        if list(objectives) != self.objectives:
            self.beginResetModel()
            self.objectives = list(objectives)
            self.endResetModel()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows, self._row_of, self.param_keys = [], {}, []
        self.endResetModel()

    def upsert(self, rows: list[TrialRow]) -> None:
        keys = sorted(set(self.param_keys) | {k for r in rows for k in r.params})
        if keys != self.param_keys:  # a new parameter is a new column: rare (the first trials)
            self.beginResetModel()
            self.param_keys = keys
            self.endResetModel()
        new = [r for r in rows if r.number not in self._row_of]
        for row in rows:
            at = self._row_of.get(row.number)
            if at is not None:
                self.rows[at] = row
                self.dataChanged.emit(self.index(at, 0), self.index(at, self.columnCount() - 1))
        if new:
            first = len(self.rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for row in new:
                self._row_of[row.number] = len(self.rows)
                self.rows.append(row)
            self.endInsertRows()

    # --- Qt model --------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns())

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == NUMBER_ROLE:
            return row.number
        value = self._value(row, index.column())
        if role == Qt.ItemDataRole.DisplayRole:
            return _text(value)
        if role == SORT_ROLE:  # empty cells sort below every number
            return value if value is not None else float("-inf") if index.column() != 1 else ""
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, (int, float)):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            columns = self.columns()
            return columns[section] if section < len(columns) else None
        return None


class TrialsTable(QTableView):
    """The table; `trial_chosen(number)` on a double click, `trial_selected(number)` on selection."""

    trial_chosen = Signal(int)
    trial_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.trials = TrialsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.trials)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setDefaultSectionSize(92)
        self.horizontalHeader().setMinimumSectionSize(72)  # "complete" stays readable
        self.horizontalHeader().setStretchLastSection(True)
        self.trials.modelReset.connect(self.resizeColumnsToContents)  # new columns: fit their headers once
        self.doubleClicked.connect(lambda index: self.trial_chosen.emit(self.number_at(index)))
        self.selectionModel().currentRowChanged.connect(
            lambda index, _: index.isValid() and self.trial_selected.emit(self.number_at(index)))

    def number_at(self, proxy_index) -> int:
        return int(self.proxy.data(proxy_index, NUMBER_ROLE))

    def select_trial(self, number: int) -> None:
        at = self.trials._row_of.get(number)
        if at is None:
            return
        index = self.proxy.mapFromSource(self.trials.index(at, 0))
        self.selectRow(index.row())
        self.scrollTo(index)

    def numbers_in_view_order(self) -> list[int]:
        return [self.number_at(self.proxy.index(r, 0)) for r in range(self.proxy.rowCount())]
