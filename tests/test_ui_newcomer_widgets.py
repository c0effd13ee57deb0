"""What a new user met in the form and the plots (issue 11, items 1, 13 and 14)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractScrollArea, QApplication  # noqa: E402

from ui_helpers import config_dir, error_dialogs, no_leaked_windows, window  # noqa: E402,F401

pytestmark = pytest.mark.gui
WHEEL_DOWN = -120  # one notch towards the user


def wheel(widget, notches: int = 1) -> None:
    """One real wheel event over the middle of `widget`, delivered the way Qt delivers it."""
    local = QPointF(widget.rect().center())
    event = QWheelEvent(local, QPointF(widget.mapToGlobal(local)), QPoint(0, 0), QPoint(0, WHEEL_DOWN * notches),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def scroll_area_of(widget) -> QAbstractScrollArea:
    parent = widget.parentWidget()
    while not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


# ---- item 1: the wheel scrolls the form, it does not change settings ------------------------

def test_wheel_over_the_chat_template_scrolls_the_form_and_changes_nothing(window, qtbot):
    window.resize(1100, 520)  # a form taller than its scroll area
    combo = window.tokenizer_panel.template_combo
    bar = scroll_area_of(combo).verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=5000)
    bar.setValue(0)
    recipe_before = window.recipe_panel.text()
    index_before = combo.currentIndex()
    assert not combo.hasFocus()
    wheel(combo, 2)
    assert combo.currentIndex() == index_before
    assert window.document.state.chat_template is None
    assert window.recipe_panel.text() == recipe_before
    assert bar.value() > 0  # the form scrolled instead
    assert combo.focusPolicy() == Qt.FocusPolicy.StrongFocus  # the wheel gives no focus either


def test_wheel_over_a_slider_in_the_form_leaves_the_parameter(window, qtbot, llama_family):
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([str(p) for p in llama_family])
    slider = window.strategy_panel._rows["lambda"].value_widget
    before = window.recipe_panel.text()
    for part in (slider, *slider.findChildren(object)):
        if hasattr(part, "hasFocus") and hasattr(part, "rect"):
            wheel(part)
    assert window.recipe_panel.text() == before


def test_a_focused_combo_still_takes_the_wheel(window, qtbot):
    combo = window.tokenizer_panel.template_combo
    window.activateWindow()
    combo.setFocus()
    qtbot.waitUntil(combo.hasFocus, timeout=5000)
    wheel(combo)
    assert combo.currentIndex() == 1 and window.document.state.chat_template == "auto"
