"""Start the desktop app: `fusion-gui` with no arguments calls run_gui."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from fusion_gui.ui import gc_guard
from fusion_gui.ui.widgets.wheel_guard import install_wheel_guard

APP_NAME = "Fusion"


def create_app(argv: list[str] | None = None) -> QApplication:
    """The one QApplication, with a clean cross-platform style."""
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else "fusion-gui", *(argv or [])])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName("fusion-gui")
    app.setStyle("Fusion")
    gc_guard.install()  # Qt objects must never be garbage-collected on a worker thread
    install_wheel_guard(app)  # scrolling a form never changes a setting
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True)
    return app


def run_gui(argv: list[str]) -> int:
    """Open the main window (and a recipe file, when one is given); returns the exit code."""
    app = create_app(argv)
    from fusion_gui.ui.main_window import MainWindow

    window = MainWindow()
    gc_guard.freeze_startup_objects()
    recipes = [a for a in argv if Path(a).suffix in (".yml", ".yaml")]
    if recipes:
        window.open_recipe(recipes[0])
    window.show()
    if os.environ.get("FUSION_GUI_SMOKE"):  # the installed app's test: a scripted walk (ui/smoke.py)
        from fusion_gui.ui.smoke import SmokeWalk

        walk = SmokeWalk(window, Path(os.environ["FUSION_GUI_SMOKE"]))
        walk.start()
    # Ctrl-C in the terminal closes the window properly (a running job is cancelled, settings
    # saved); the idle timer lets Python run its signal handler while Qt's loop is in C++.
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    wake_for_signals = QTimer(interval=250)
    wake_for_signals.timeout.connect(lambda: None)
    wake_for_signals.start()
    try:
        return int(app.exec())
    finally:
        wake_for_signals.stop()
        signal.signal(signal.SIGINT, previous)
