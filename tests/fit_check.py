"""Does a view fit its window? Widgets clipped sideways, scroll areas that scroll sideways, squeezed texts."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import (
    QAbstractButton, QAbstractSpinBox, QCheckBox, QComboBox, QLabel, QLineEdit, QRadioButton, QScrollArea, QWidget,
)
from superqt import QElidingLabel


def shown_rect(widget: QWidget, top: QWidget, sideways_only: bool = False) -> QRect:
    """The part of `widget` its ancestors up to `top` leave visible, in top's coordinates;
    sideways_only: clipped left and right only (what is below the fold still counts)."""
    def clip(other: QWidget, origin: QPoint) -> QRect:
        if sideways_only:
            return QRect(origin.x(), -10**6, other.width(), 2 * 10**6)
        return QRect(origin, other.size())

    rect = QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())
    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        rect &= clip(parent, parent.mapTo(top, QPoint(0, 0)))
        parent = parent.parentWidget()
    return rect & clip(top, QPoint(0, 0))


def in_scroll_area(widget: QWidget, top: QWidget) -> bool:
    parent = widget.parentWidget()
    while parent is not None and parent is not top:
        if isinstance(parent, QScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def _shown(widget: QWidget, top: QWidget) -> bool:
    return widget.isVisibleTo(top) and widget.width() > 0


def fit_problems(top: QWidget) -> list[str]:
    """Everything in `top` that does not fit: one line each (empty: the view fits)."""
    problems = []
    for area in top.findChildren(QScrollArea):
        if _shown(area, top) and area.widget() is not None and area.widget().width() > area.viewport().width():
            problems.append(f"{area.objectName() or area.widget().metaObject().className()} scrolls sideways: "
                            f"{area.widget().width()} px in a {area.viewport().width()} px view")
    for widget in top.findChildren(QWidget):
        if not _shown(widget, top) or widget.window() is not top.window():
            continue
        name = _name(widget)
        if isinstance(widget, QAbstractButton) and not isinstance(widget, (QCheckBox, QRadioButton)) \
                and widget.parentWidget() is not None and "qt_" not in widget.objectName():
            # below the fold of a scroll area is fine; cut off at the side, or outside any scroll area, is not
            shown = shown_rect(widget, top, sideways_only=in_scroll_area(widget, top))
            if shown.size() != widget.size():
                problems.append(f"{name} is clipped: {shown.width()}x{shown.height()} of "
                                f"{widget.width()}x{widget.height()}")
        needs = _width_needed(widget)
        if needs is not None and widget.width() < needs:
            problems.append(f"{name} is {widget.width()} px wide, its text needs {needs}")
    return problems


def _width_needed(widget: QWidget) -> int | None:
    if isinstance(widget, QElidingLabel):
        return None  # elides on purpose, the full text in its tooltip
    if isinstance(widget, QLabel):
        return None if widget.wordWrap() or not widget.text() else widget.minimumSizeHint().width()
    if isinstance(widget, (QAbstractButton, QAbstractSpinBox)):
        return widget.minimumSizeHint().width() if isinstance(widget, QAbstractButton) else widget.sizeHint().width()
    if isinstance(widget, (QLineEdit, QComboBox)):
        return widget.minimumSizeHint().width()
    return None


def _name(widget: QWidget) -> str:
    text = getattr(widget, "text", None)
    label = text() if callable(text) else ""
    if not label and isinstance(widget, QLineEdit):
        label = widget.placeholderText()
    return f"{type(widget).__name__} {label[:40]!r}"


def fully_shown(widget: QWidget, top: QWidget) -> bool:
    """On screen without scrolling: nothing of it clipped."""
    return _shown(widget, top) and shown_rect(widget, top).size() == widget.size()
