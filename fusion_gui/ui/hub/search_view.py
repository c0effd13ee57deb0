"""Search the Hugging Face Hub as the user types: a debounced background job where only the newest
query's answer is shown (LatestJob). Choosing a row hands its repo id on."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QHeaderView, QLabel, QLineEdit, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from fusion_gui.ui.hub.hub_text import search_cells, search_job
from fusion_gui.ui.jobs import LatestJob

SEARCH_DELAY_MS = 400  # typing pauses this long before the Hub is asked
SEARCH_LIMIT = 50
COLUMNS = ("Name", "Downloads", "Likes", "License", "Gated", "Size")


class HubSearchView(QWidget):
    repo_chosen = Signal(str)  # a row was clicked: its repo id

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list = []
        self.query_edit = QLineEdit(placeholderText="Search the Hub, e.g. “llama 1b”", clearButtonEnabled=True)
        self.query_edit.textChanged.connect(self.schedule)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.status = QLabel("Type to search the Hub, or enter a repo id below.")
        self.status.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.query_edit)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.job = LatestJob(self, delay_ms=SEARCH_DELAY_MS)
        self.job.result.connect(self._show)
        self.job.failed.connect(self._show_error)

    def schedule(self, *_args) -> None:
        query = self.query_edit.text().strip()
        if not query:
            self.job.cancel_pending()
            return
        self.status.setText("Searching…")
        self.job.schedule(lambda: (lambda token: search_job(query, SEARCH_LIMIT, token)))

    def search_now(self, query: str):
        """Search at once (tests, and Enter); returns the worker."""
        self.query_edit.blockSignals(True)
        self.query_edit.setText(query)
        self.query_edit.blockSignals(False)
        self.status.setText("Searching…")
        return self.job.request(lambda token: search_job(query, SEARCH_LIMIT, token))

    def row_texts(self) -> list[tuple[str, ...]]:
        return [tuple(self.table.item(r, c).text() for c in range(len(COLUMNS))) for r in range(self.table.rowCount())]

    def _show(self, rows: list) -> None:
        self.rows = list(rows)
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, text in enumerate(search_cells(row)):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.status.setText(f"{len(self.rows)} model{'s' if len(self.rows) != 1 else ''} found; choose one to "
                            "check it." if self.rows else "No model on the Hub matches.")

    def _show_error(self, summary: str, _details: str) -> None:
        self.table.setRowCount(0)
        self.rows = []
        self.status.setText(f"Search failed: {summary}")

    def _on_selection(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            self.repo_chosen.emit(self.table.item(min(rows), 0).text())
