"""The Inspect tab: many models at once (similarity), different depths, spectral health; each a job.
Shown with empty choices, its views start from the Merge view's models."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QTabWidget, QWidget

from fusion_gui.session.inspect import InspectState
from fusion_gui.ui.panels.depth_panel import DepthPanel
from fusion_gui.ui.panels.similarity_panel import SimilarityPanel
from fusion_gui.ui.panels.spectral_panel import SpectralPanel


class InspectPanel(QTabWidget):
    message = Signal(str)

    def __init__(self, state: InspectState | None = None, merge_session=None, known_models=lambda: [],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state if state is not None else InspectState()
        self.similarity = SimilarityPanel(self.state, merge_session, known_models)
        self.merge_session = merge_session
        self.depth = DepthPanel(self.state, known_models, merge_session)
        self.spectral = SpectralPanel(self.state, known_models, merge_session)
        self.addTab(self.similarity, "Many models")
        self.addTab(self.depth, "Different depths")
        self.addTab(self.spectral, "Spectral health")
        self.similarity.message.connect(self.message.emit)

    def showEvent(self, event) -> None:
        if self.merge_session is not None:
            self.state.fill_empty_from_merge(self.merge_session.state)
        super().showEvent(event)

    def refresh_choices(self) -> None:
        for panel in (self.similarity, self.depth, self.spectral):
            panel.refresh_choices()
