"""The status bar follows the tab shown: each tab keeps its own last message, shown again when the
user comes back to it, so a message about a distillation never sits under the Merge tab."""

from __future__ import annotations

from PySide6.QtWidgets import QStatusBar, QTabWidget, QWidget


class TabStatus:
    def __init__(self, tabs: QTabWidget, bar: QStatusBar):
        self.tabs, self.bar = tabs, bar
        self._messages: dict[int, str] = {}  # keyed by the id of the tab's page widget
        tabs.currentChanged.connect(self._show_current)

    def show(self, page: QWidget, text: str) -> None:
        """`text` becomes `page`'s last message; shown now when `page` is the tab in view."""
        self._messages[id(page)] = text
        if self.tabs.currentWidget() is page:
            self.bar.showMessage(text)

    def message(self, page: QWidget) -> str:
        return self._messages.get(id(page), "")

    def _show_current(self, _index: int) -> None:
        text = self.message(self.tabs.currentWidget())
        if text:
            self.bar.showMessage(text)
        else:
            self.bar.clearMessage()
