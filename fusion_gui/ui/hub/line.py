"""A word-wrapped line of a Hub dialog that takes no room while it says nothing."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel


class Line(QLabel):
    def __init__(self, rich: bool = False, style: str = ""):
        super().__init__(wordWrap=True, textFormat=Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
        if style:
            self.setStyleSheet(style)
        if rich:
            self.setOpenExternalLinks(True)
            self.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.setVisible(False)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        self.setVisible(bool(text))

    def clear(self) -> None:
        self.setText("")
