"""Partial folders a killed job left beside the output: shown in the pre-flight, removed when the user says so.

The engine removes them itself at the next merge into the same folder; this lets the user see them (a killed
70B merge leaves ~138 GB) and free the space now. Only folders whose owning process is gone are removed,
re-checked at the moment of removal, so a job that is still writing is never touched.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from fusion_gui.engine.io.partial import GONE, describe, sweep_partials
from fusion_gui.formatting import format_bytes

DELETE_LEFTOVERS = "fusion-gui:delete-leftovers"  # the pre-flight's link that offers the removal


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def partial_lines(partials) -> list[str]:
    """The pre-flight's lines about partial folders, with a link to remove those whose job is gone."""
    lines = [f"<span style='color:#8a5a00'>⚠ Unfinished folder: {_escape(describe(p))}</span>" for p in partials]
    gone = [p for p in partials if p.state == GONE]
    if gone:
        size = format_bytes(sum(p.bytes for p in gone))
        lines.append(f"<a href='{DELETE_LEFTOVERS}'>Delete the {len(gone)} left by jobs that no longer run "
                     f"({size})</a>")
    return lines


def confirm(parent: QWidget, text: str) -> bool:
    """Ask before deleting anything (tests replace this)."""
    answer = QMessageBox.question(parent, "Delete unfinished folders", text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                  QMessageBox.StandardButton.Cancel)
    return answer == QMessageBox.StandardButton.Yes


def delete_leftovers(parent: QWidget, partials) -> bool:
    """Ask, then remove the partial folders whose owner is gone; True when something was removed."""
    gone = [p for p in partials if p.state == GONE]
    if not gone:
        return False
    names = "\n".join(describe(p) for p in gone)
    if not confirm(parent, f"Delete these unfinished folders ({format_bytes(sum(p.bytes for p in gone))})?\n\n{names}"):
        return False
    for folder in {str(Path(p.path).parent) for p in gone}:
        sweep_partials(Path(folder))  # re-checks every owner: a running job's folder stays
    return True
