"""The tokens some inputs have and others lack, with a mark per model, filterable.

Shows a VocabComparison the engine computed (fusion_gui.engine.merge.vocab); it computes nothing itself.
Tokens are shown as Python reprs, so a token of spaces or a newline is visible.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QLineEdit, QTableView,
    QVBoxLayout, QWidget,
)

MAX_SHOWN = 2_000  # rows the list shows; the filter searches them all
_PRESENT, _ABSENT = QColor("#1e7d32"), QColor("#b3261e")


def matching_tokens(partial_tokens, needle: str) -> list[tuple[str, tuple[bool, ...]]]:
    """The partial tokens whose text or repr contains `needle` (case-insensitive)."""
    needle = needle.strip().lower()
    if not needle:
        return list(partial_tokens)
    return [row for row in partial_tokens if needle in row[0].lower() or needle in repr(row[0]).lower()]


class PartialTokensModel(QAbstractTableModel):
    """Token repr, then ✓ or ✗ for each model."""

    def __init__(self, labels: list[str], parent=None):
        super().__init__(parent)
        self._labels = labels
        self._rows: list[tuple[str, tuple[bool, ...]]] = []
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)

    def set_rows(self, rows: list[tuple[str, tuple[bool, ...]]]) -> None:
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()

    def tokens(self) -> list[str]:
        return [token for token, _ in self._rows]

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else 1 + len(self._labels)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return "Token" if section == 0 else self._labels[section - 1]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        token, present = self._rows[index.row()]
        column = index.column()
        if column == 0:
            if role == Qt.ItemDataRole.DisplayRole:
                return repr(token)
            if role == Qt.ItemDataRole.FontRole:
                return self._mono
            return None
        here = present[column - 1]
        if role == Qt.ItemDataRole.DisplayRole:
            return "✓" if here else "✗"
        if role == Qt.ItemDataRole.ForegroundRole:
            return _PRESENT if here else _ABSENT
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignCenter
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{'In' if here else 'Not in'} {self._labels[column - 1]}"
        return None


class VocabDialog(QDialog):
    """Non-modal: the form stays usable while it is open."""

    def __init__(self, comparison, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Tokens not in every model")
        self.resize(620, 520)
        self.comparison = comparison
        labels = [info.label for info in comparison.models]
        self.filter_edit = QLineEdit(placeholderText="Filter tokens, e.g. im_start or \\n")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.apply_filter)
        self.model = PartialTokensModel(labels, self)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.verticalHeader().setVisible(False)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.verticalHeader().setDefaultSectionSize(22)
        header = self.view.horizontalHeader()
        header.setMinimumSectionSize(64)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, 1 + len(labels)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.count_label = QLabel()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        intro = QLabel(f"{len(comparison.partial_tokens):,} tokens are in some models and not in others "
                       f"(union {comparison.union_size:,}, in every model {comparison.common_size:,}). "
                       "Tokens are shown as Python strings, so spaces and newlines are visible.")
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.count_label)
        layout.addWidget(buttons)
        self.apply_filter("")

    def apply_filter(self, text: str) -> None:
        rows = matching_tokens(self.comparison.partial_tokens, text)
        self.model.set_rows(rows[:MAX_SHOWN])
        more = len(rows) - MAX_SHOWN
        what = "matching " if text.strip() else ""
        if more > 0:
            self.count_label.setText(f"The first {MAX_SHOWN:,} {what}tokens, and {more:,} more: filter to narrow.")
        else:
            self.count_label.setText(f"{len(rows):,} {what}token{'' if len(rows) == 1 else 's'}.")

    def shown_tokens(self) -> list[str]:
        return self.model.tokens()
