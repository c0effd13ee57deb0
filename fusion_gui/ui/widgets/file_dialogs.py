"""File and folder dialogs that open where the user last was, not in the folder the app started from."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from fusion_gui.ui.settings import remember_folder, remembered_folder


def start_in(start: str = "") -> str:
    """Where a dialog opens: `start` when it names an existing place (or a new name in an existing
    folder); a bare name goes into the remembered folder; nothing given opens the remembered folder."""
    start = str(start or "").strip()
    if not start:
        return remembered_folder()
    path = Path(start).expanduser()
    if path.exists() or (path.parent != Path(".") and path.parent.is_dir()):
        return start
    folder = remembered_folder()
    return str(Path(folder) / path.name) if folder else start


def _remember(chosen: str) -> str:
    if chosen:
        remember_folder(Path(chosen).parent)  # the folder it sits in: its siblings come next
    return chosen


def ask_folder(parent: QWidget | None, title: str, start: str = "") -> str:
    return _remember(QFileDialog.getExistingDirectory(parent, title, start_in(start)))


def ask_open_file(parent: QWidget | None, title: str, start: str = "", file_filter: str = "") -> str:
    path, _ = QFileDialog.getOpenFileName(parent, title, start_in(start), file_filter)
    return _remember(path)


def ask_open_files(parent: QWidget | None, title: str, start: str = "", file_filter: str = "") -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, title, start_in(start), file_filter)
    if paths:
        _remember(paths[0])
    return list(paths)


def ask_save_file(parent: QWidget | None, title: str, start: str = "", file_filter: str = "") -> str:
    path, _ = QFileDialog.getSaveFileName(parent, title, start_in(start), file_filter)
    return _remember(path)
