"""Two runs' recipes side by side as a unified diff (difflib), in a read-only dialog."""

from __future__ import annotations

import difflib

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget


def recipe_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """The unified diff of two recipe texts; a sentence when they are the same."""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm=""))
    return "\n".join(lines) if lines else "The two recipes are the same."


class RecipeDiffDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Recipe diff")
        self.resize(760, 560)
        self.view = QPlainTextEdit(readOnly=True)
        self.view.setFont(QFont("monospace"))
        self.view.setPlainText(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view)
        layout.addWidget(buttons)
