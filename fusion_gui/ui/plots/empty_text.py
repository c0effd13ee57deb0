"""What an empty plot shows before its first result: one centered sentence saying what will appear,
with the axes (and any colour bar or band) hidden, since axes without data only show meaningless ranges."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLabel


class EmptyPlotText(QObject):
    """A word-wrapped sentence over `plot`'s view; `show_text` and `hide_text` switch the axes and the
    `extras` (graphics items that mean nothing without data) the other way."""

    def __init__(self, plot: pg.PlotWidget, text: str, extras=(), axes=("bottom", "left")):
        super().__init__(plot)
        self.plot, self.extras, self.axes = plot, list(extras), tuple(axes)
        self.label = QLabel(text, plot.viewport())
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setStyleSheet("color: #aaaaaa; background: transparent;")
        self.label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        plot.viewport().installEventFilter(self)
        self.show_text(text)

    @property
    def shown(self) -> bool:
        return not self.label.isHidden()

    def show_text(self, text: str | None = None) -> None:
        if text is not None:
            self.label.setText(text)
        self._set_empty(True)

    def hide_text(self) -> None:
        self._set_empty(False)

    def _set_empty(self, empty: bool) -> None:
        self.label.setVisible(empty)
        item = self.plot.getPlotItem()
        for side in self.axes:
            item.showAxis(side, not empty)
        for extra in self.extras:
            extra.setVisible(not empty)
        self._place()

    def _place(self) -> None:
        self.label.setGeometry(self.plot.viewport().rect().adjusted(24, 24, -24, -24))

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self._place()
        return False
