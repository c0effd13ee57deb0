"""An editable list of models (paths or repo ids): a picker to add one, and Remove for the selected."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QPushButton, QVBoxLayout, QWidget

from fusion_gui.ui.panels.compare_panel import ModelPicker


class ModelList(QWidget):
    """Shows a list of references; asks to add or remove through signals (the state decides)."""

    add_requested = Signal(str)
    remove_requested = Signal(str)

    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.picker = ModelPicker(placeholder)
        self.list = QListWidget()
        self.list.setMaximumHeight(76)
        add = QPushButton("Add")
        remove = QPushButton("Remove")
        add.clicked.connect(self._add)
        remove.clicked.connect(self._remove)
        row = QHBoxLayout()
        row.addWidget(self.picker, 1)
        row.addWidget(add)
        row.addWidget(remove)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.list)

    def show_refs(self, refs: list[str]) -> None:
        self.list.clear()
        self.list.addItems(list(refs))

    def refs(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _add(self) -> None:
        if self.picker.text():
            self.add_requested.emit(self.picker.text())
            self.picker.set_text("")

    def _remove(self) -> None:
        for item in self.list.selectedItems():
            self.remove_requested.emit(item.text())


def bind_list(widget: ModelList, signal, current: Callable[[], list[str]]) -> None:
    """Show the state's list now and whenever it changes."""
    widget.show_refs(current())
    signal.connect(lambda refs: widget.show_refs(refs))
