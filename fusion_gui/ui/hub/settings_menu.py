"""The window's Settings menu entry for the Hub: “Allow downloads from the Hugging Face Hub” (off by
default). It writes the window's own AppSettings, which the Hub dialog and the merge pre-flight read."""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow

from fusion_gui.ui.settings import AppSettings

from fusion_gui.ui.hub.settings_text import ALLOW_DOWNLOADS


def add_hub_settings(window: QMainWindow, settings: AppSettings, on_change=lambda on: None) -> QAction:
    menu = window.menuBar().addMenu("Se&ttings")
    action = QAction(ALLOW_DOWNLOADS, window, checkable=True)
    action.setChecked(settings.allow_hub_downloads)
    action.setToolTip("Off: models are read from disk and the local Hugging Face cache only.")
    menu.aboutToShow.connect(lambda: action.setChecked(settings.allow_hub_downloads))  # the dialog may change it

    def toggled(on: bool) -> None:
        settings.allow_hub_downloads = on
        settings.save()
        on_change(on)

    action.toggled.connect(toggled)
    menu.addAction(action)
    return action
