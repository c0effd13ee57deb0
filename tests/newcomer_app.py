"""The app as a newcomer starts it, for tests/test_newcomer_x11.py: run in its own process on a real
X server. Besides the window, it writes what is on screen to STATE_DIR/state.json twice a second
(visible texts, red texts, open dialogs, the "Try the demo" button's global position, the scores)
and answers screenshot requests (a file STATE_DIR/shot-NAME asks for OUT_DIR/NAME.png, taken from
the X server's screen). A file STATE_DIR/quit closes the window.

Usage: python tests/newcomer_app.py STATE_DIR OUT_DIR
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

from PySide6.QtCore import QPoint, QTimer
from PySide6.QtWidgets import (
    QAbstractButton, QApplication, QLabel, QMessageBox, QStatusBar, QTableWidget, QWidget,
)

RED_MARKUP = re.compile(r"color\s*:\s*(#b3261e|red|#ff0000|#c00|#cc0000)", re.IGNORECASE)


def plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()


def is_red(widget: QWidget, text: str) -> bool:
    if RED_MARKUP.search(text):
        return True
    color = widget.palette().color(widget.foregroundRole())
    return color.red() > 150 and color.green() < 100 and color.blue() < 100


def visible_texts(window) -> tuple[list[str], list[str]]:
    texts, red = [], []
    for widget in [window, *window.findChildren(QWidget)]:
        if not widget.isVisible():
            continue
        text = ""
        if isinstance(widget, QLabel):
            text = widget.text()
        elif isinstance(widget, QAbstractButton):
            text = widget.text()
        elif isinstance(widget, QStatusBar):
            text = widget.currentMessage()
        if not text.strip():
            continue
        texts.append(plain(text))
        if is_red(widget, text):
            red.append(plain(text))
    return texts, red


def scores(window) -> dict[str, str]:
    table: QTableWidget = window.eval_panel.table
    out = {}
    for row in range(table.rowCount()):
        for col in range(table.columnCount()):
            item = table.item(row, col)
            model = table.verticalHeaderItem(row)
            metric = table.horizontalHeaderItem(col)
            if item is not None and model is not None and metric is not None:
                out[f"{model.text()} | {metric.text()}"] = item.text()
    return out


def main(state_dir: Path, out_dir: Path) -> int:
    from fusion_gui.ui.app import create_app
    from fusion_gui.ui.main_window import MainWindow

    app = create_app([])
    window = MainWindow()
    window.resize(1280, 800)
    window.move(0, 0)
    window.show()
    out_dir.mkdir(parents=True, exist_ok=True)

    def tick() -> None:
        if (state_dir / "quit").exists():
            window.close()
            app.quit()
            return
        for request in sorted(state_dir.glob("shot-*")):
            name = request.name[len("shot-"):]
            window.screen().grabWindow(0).save(str(out_dir / f"{name}.png"))  # the X screen itself
            request.unlink()
        texts, red = visible_texts(window)
        dialogs = [plain(w.text()) for w in QApplication.topLevelWidgets()
                   if isinstance(w, QMessageBox) and w.isVisible()]
        button = window.start_panel.demo_button
        centre = button.mapToGlobal(QPoint(button.width() // 2, button.height() // 2))
        state = {
            "texts": texts, "red": red, "dialogs": dialogs,
            "demo_button": [centre.x(), centre.y()] if button.isVisible() else None,
            "tab": window.tabs.tabText(window.tabs.currentIndex()),
            "building": window.start_panel.runner.running,
            "merging": window.run_panel.runner.running,
            "merged": window.run_panel.last_result is not None,
            "evaluating": window.eval_panel.runner.running,
            "scores": scores(window),
            "plot_points": window.merge_plots.layer_plot.point_counts(),
        }
        temp = state_dir / "state.json.tmp"
        temp.write_text(json.dumps(state))
        temp.replace(state_dir / "state.json")

    timer = QTimer(interval=500)
    timer.timeout.connect(tick)
    timer.start()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
