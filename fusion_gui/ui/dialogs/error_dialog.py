"""Errors reach the user as one clear sentence, with the details behind "Show Details..."."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


class ErrorDialog(QMessageBox):
    def __init__(self, summary: str, details: str = "", title: str = "Fusion", parent: QWidget | None = None):
        super().__init__(parent)
        self.setIcon(QMessageBox.Icon.Critical)
        self.setWindowTitle(title)
        self.setText(summary)
        if details and details.strip() != summary.strip():
            self.setDetailedText(details)  # QMessageBox adds the "Show Details..." button
        self.setStandardButtons(QMessageBox.StandardButton.Ok)


def show_error(parent: QWidget | None, summary: str, details: str = "", title: str = "Fusion") -> None:
    """Show the error modally; the app stays usable afterwards."""
    dialog = ErrorDialog(summary, details, title, parent)
    dialog.exec()
    dialog.deleteLater()
