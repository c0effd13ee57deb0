"""Pick models already in the local Hugging Face cache (huggingface_hub's cache scan); nothing
is downloaded."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
    QVBoxLayout, QWidget,
)

from fusion_gui.formatting import format_bytes


class HubCacheDialog(QDialog):
    """The models already in the local Hugging Face cache; nothing is downloaded."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models in the Hugging Face cache")
        self.resize(560, 380)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(("Repository", "Size", "Revisions"))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.doubleClicked.connect(self.accept)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self._fill()

    def _fill(self) -> None:
        repos, note = scan_hub_cache()
        self.note.setText(note)
        self.table.setRowCount(len(repos))
        for row, (repo_id, size, revisions) in enumerate(repos):
            for column, text in enumerate((repo_id, format_bytes(size), str(revisions))):
                self.table.setItem(row, column, QTableWidgetItem(text))

    def selected_repos(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).text() for r in rows]


def scan_hub_cache() -> tuple[list[tuple[str, int, int]], str]:
    """(repo id, size, number of revisions) of every cached model, and a line saying where."""
    from fusion_gui.engine.io.resolve import hub_cache_dir

    cache = hub_cache_dir()
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir(cache)
    except Exception:  # no cache yet, or one we cannot read: an empty list says it all
        return [], f"No Hugging Face cache found at {cache}."
    repos = sorted(((r.repo_id, r.size_on_disk, len(r.revisions)) for r in info.repos
                    if r.repo_type == "model"), key=lambda r: r[0].lower())
    if not repos:
        return [], f"The Hugging Face cache at {cache} holds no models."
    return repos, f"{len(repos)} models in {cache}. Select one or more and press Add."
