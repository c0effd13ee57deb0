"""The question asked before an existing output folder is replaced: it names the folder and its size."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from fusion_gui.formatting import format_bytes


def replace_question(folder: str, size: int) -> str:
    return (f"The folder '{folder}' already exists and holds {format_bytes(size)}. Replace it with the new "
            f"merge? Its contents are deleted once the merge has finished; cancelling keeps them.")


def ask_replace(parent: QWidget | None, folder: str, size: int) -> bool:
    """True when the user agrees to replace `folder` (tests replace this function)."""
    box = QMessageBox(QMessageBox.Icon.Question, "Replace the folder?", replace_question(folder, size),
                      QMessageBox.StandardButton.Cancel, parent)
    replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)  # Enter never deletes
    box.exec()
    chosen = box.clickedButton() is replace
    box.deleteLater()
    return chosen
