"""The mouse wheel scrolls a form; it changes a combo box, spin box or slider only once that
widget has focus (a click or Tab), so scrolling past a setting never changes it."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QScrollBar, QWidget,
)

GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider)


def _scroll_area_around(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea):
            return parent
        parent = parent.parentWidget()
    return None


def _guard(widget: QObject) -> bool:
    """A setting widget that sits in a scroll area (a scroll bar is a slider of its own: not guarded)."""
    return (isinstance(widget, GUARDED) and not isinstance(widget, QScrollBar)
            and _scroll_area_around(widget) is not None)


class WheelGuard(QObject):
    """App-wide event filter: an unfocused setting passes the wheel to the scroll area around it."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.Polish and isinstance(watched, GUARDED):
            _strong_focus(watched)
        elif kind == QEvent.Type.Wheel and isinstance(watched, GUARDED) and not watched.hasFocus():
            if _guard(watched):
                _scroll(_scroll_area_around(watched), event)
                return True
        return False


def _strong_focus(widget: QWidget) -> None:
    """The wheel must not give focus (WheelFocus would make every wheeled-over widget focused)."""
    if widget.focusPolicy() == Qt.FocusPolicy.WheelFocus:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)


def _scroll(area: QAbstractScrollArea, event: QWheelEvent) -> None:
    viewport = area.viewport()
    local = viewport.mapFromGlobal(event.globalPosition().toPoint()).toPointF()
    forwarded = QWheelEvent(local, event.globalPosition(), event.pixelDelta(), event.angleDelta(),
                            event.buttons(), event.modifiers(), event.phase(), event.inverted(),
                            event.source(), event.pointingDevice())
    QApplication.sendEvent(viewport, forwarded)


def install_wheel_guard(app: QApplication | None = None) -> WheelGuard:
    """Install the guard once per application (repeat calls return the same one)."""
    app = app or QApplication.instance()
    guard = app.findChild(WheelGuard)
    if guard is None:
        guard = WheelGuard(app)
        app.installEventFilter(guard)
    for widget in app.allWidgets():  # widgets polished before the guard existed
        if isinstance(widget, GUARDED):
            _strong_focus(widget)
    return guard
