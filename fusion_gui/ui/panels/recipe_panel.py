"""The recipe as mergekit YAML: a read-only view that follows the form, and its files.

The form and the recipe are one thing seen twice: MergeState.from_recipe fills the session,
MergeState.to_recipe reads it back, and opening a recipe then saving it gives the same recipe.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import Recipe, dump_recipe
from fusion_gui.session.merge import MergeSession


def save_recipe_file(recipe: Recipe, path: str | Path) -> Path:
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".yml")
    path.write_text(dump_recipe(recipe), encoding="utf-8")
    return path


def recipe_text(document: MergeSession) -> str:
    try:
        return dump_recipe(document.recipe())
    except InputError as err:  # a state the form cannot spell yet: say why instead of YAML
        return f"# {err}"


class RecipePanel(QWidget):
    def __init__(self, document: MergeSession, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.view = QPlainTextEdit(readOnly=True)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        note = QLabel("The recipe this form describes (mergekit YAML). File ▸ Save recipe writes it; "
                      "`fusion-gui merge RECIPE OUT` runs it headless.")
        note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(note)
        layout.addWidget(self.view, 1)
        document.changed.connect(self.refresh)
        self.refresh()

    def refresh(self, *_origin) -> None:
        text = recipe_text(self.document)
        if text != self.view.toPlainText():
            scroll = self.view.verticalScrollBar().value()
            self.view.setPlainText(text)
            self.view.verticalScrollBar().setValue(scroll)

    def text(self) -> str:
        return self.view.toPlainText()
