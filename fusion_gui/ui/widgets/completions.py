"""Completions of one prompt side by side: one column per model, its greedy and sampled text below its name."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget
from superqt import QElidingLabel

from fusion_gui.events import Generation


class CompletionColumn(QWidget):
    """One model: its name on top, then each completion mode as a short paragraph."""

    def __init__(self, model: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = model
        self.title = QElidingLabel(model)
        self.title.setToolTip(model)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setPlaceholderText("Waiting for its completions…")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.text, 1)

    def add(self, event: Generation) -> None:
        # the prompt is the same in every column: only the model's own text follows its mode
        self.text.appendPlainText(f"{event.mode}:\n{event.prompt}{event.text}\n")


class CompletionsView(QWidget):
    """A row of columns, one per model, in the order their completions arrive (the evaluation's order)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.columns: dict[str, CompletionColumn] = {}
        self.hint = QLabel("Completions of the prompt appear here, one column per model.")
        self.hint.setStyleSheet("color: palette(mid);")
        self.hint.setWordWrap(True)
        self._row = QHBoxLayout(self)
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.addWidget(self.hint)

    def clear(self) -> None:
        for column in self.columns.values():
            self._row.removeWidget(column)
            column.deleteLater()
        self.columns = {}
        self.hint.show()

    def add(self, event: Generation) -> None:
        column = self.columns.get(event.model)
        if column is None:
            column = self.columns[event.model] = CompletionColumn(event.model, self)
            self._row.addWidget(column, 1)  # equal widths: every column as readable as the next
            self.hint.hide()
        column.add(event)

    def text_of(self, model: str) -> str:
        """What one model's column shows ('' when it has none): for tests and copying."""
        column = self.columns.get(model)
        return column.text.toPlainText() if column is not None else ""
