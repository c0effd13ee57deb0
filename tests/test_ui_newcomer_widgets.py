"""What a new user met in the form and the plots (issue 11, items 1, 13 and 14)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QAbstractScrollArea, QApplication  # noqa: E402

from fusion_gui.events import LayerMetrics, TensorMetrics  # noqa: E402
from fusion_gui.ui.panels.setting_editor import SettingEditorDialog  # noqa: E402
from fusion_gui.ui.plots import LayerChangePlot, MetricHeatmap  # noqa: E402
from ui_helpers import close_questions, config_dir, error_dialogs, no_leaked_windows, window  # noqa: E402,F401

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


# ---- item 13: plots ------------------------------------------------------------------------

MODELS = ("ft-a", "ft-b")


def layer_ev(layer, a, b, result):
    return LayerMetrics(layer, MODELS, np.array([a, b]), result, tensors=9)


def tensor_ev(name, layer, kind, a, b, result=0.1, **kw):
    return TensorMetrics(name, layer, kind, 100, MODELS, np.array([a, b]), result, **kw)


@pytest.fixture
def layer_plot(qtbot):
    plot = LayerChangePlot()
    qtbot.addWidget(plot)
    plot.resize(800, 500)
    plot.show()
    qtbot.waitExposed(plot)
    plot.reset(MODELS)
    return plot


@pytest.fixture
def heat(qtbot):
    heat = MetricHeatmap()
    qtbot.addWidget(heat)
    heat.resize(900, 500)
    heat.show()
    qtbot.waitExposed(heat)
    heat.reset()
    return heat


def all_ticks(axis, low: float, high: float) -> list[float]:
    return [v for _, values in axis.tickValues(low, high, 400) for v in values]


@pytest.mark.parametrize("width", [800, 380])
def test_the_legend_sits_outside_the_plot_area(layer_plot, qtbot, width):
    layer_plot.resize(width, 400)
    for k in range(6):
        layer_plot.add_layer(layer_ev(k, 0.01 * k, 0.02, 0.03 - 0.005 * k))
    layer_plot.flush()
    legend, plot = layer_plot._legend, layer_plot._plot
    qtbot.waitUntil(lambda: plot.vb.width() > 100, timeout=5000)
    qtbot.wait(20)
    assert len(legend.items) == 3 and legend.isVisible()
    area = plot.vb.sceneBoundingRect()
    box = legend.sceneBoundingRect()
    assert not box.intersects(area), f"legend {box} covers the plot area {area}"
    assert box.left() >= plot.sceneBoundingRect().left() - 1
    assert box.right() <= plot.sceneBoundingRect().right() + 1  # wraps instead of running off


def test_the_heatmap_scale_follows_the_data_and_can_be_locked(heat):
    for k in range(3):
        for kind in ("attn.q", "mlp.up", "norm"):
            heat.add_tensor(tensor_ev(f"l{k}.{kind}", k, kind, 0.129 + 0.001 * k, 0.131))
    heat.flush()
    low, high = heat.color_levels()
    assert 0.12 < low < 0.131 and 0.13 < high < 0.14  # not 0-0.3 with every cell the same colour
    heat.lock_box.setChecked(True)
    heat.add_tensor(tensor_ev("l3.q", 3, "attn.q", 0.5, 0.5))
    heat.flush()
    assert heat.color_levels() == (low, high)  # locked: colours stay comparable
    heat.reset()  # a new run keeps a locked scale
    heat.add_tensor(tensor_ev("l0.q", 0, "attn.q", 0.9, 0.9))
    heat.flush()
    assert heat.color_levels() == (low, high)
    heat.lock_box.setChecked(False)
    heat.add_tensor(tensor_ev("l1.q", 1, "attn.q", 0.1, 0.1))
    heat.flush()
    assert heat.color_levels() == pytest.approx((0.1, 0.9))
    heat.set_metric("cosine between changes")
    heat.add_tensor(tensor_ev("l2.q", 2, "attn.q", 0.1, 0.1, cosine=-0.2))
    heat.add_tensor(tensor_ev("l2.k", 2, "attn.k", 0.1, 0.1, cosine=0.05))
    heat.flush()
    assert heat.color_levels() == pytest.approx((-0.2, 0.2))  # centred: the middle colour is 0
    assert not heat.lock_box.isChecked()


def test_the_empty_heatmap_shows_no_axis_multiplier(heat, qtbot):
    heat.flush()
    qtbot.wait(20)
    for side in ("bottom", "left"):
        assert "(x" not in heat._plot.getAxis(side).labelString()
    assert "(x" not in heat._bar.axis.labelString()


def test_compare_offers_only_metrics_without_a_merge_result(window):
    def offered(heatmap):
        box = heatmap._metric_box
        return [box.itemText(i) for i in range(box.count())]

    compare = offered(window.compare_panel.plots.heatmap)
    assert "result change" not in compare and "fraction kept" not in compare
    assert compare == window.compare_panel.plots.heatmap.metric_names()
    assert {"relative change", "cosine between changes"} <= set(compare)
    merge = offered(window.merge_plots.heatmap)
    assert {"result change", "fraction kept"} <= set(merge)


def test_a_two_layer_model_gets_whole_layer_ticks(qtbot, layer_plot):
    dialog = SettingEditorDialog("weight", [0.2, 0.8], None, num_layers=2)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    plot = dialog.curve_plot.getPlotItem()
    (x0, x1), _ = plot.vb.viewRange()
    ticks = all_ticks(plot.getAxis("bottom"), x0, x1)
    assert ticks and all(float(v).is_integer() for v in ticks), ticks
    layer_plot.add_layer(layer_ev(0, 0.1, 0.2, 0.15))
    layer_plot.add_layer(layer_ev(1, 0.1, 0.2, 0.15))
    layer_plot.flush()
    (x0, x1), _ = layer_plot._plot.vb.viewRange()
    assert sorted(all_ticks(layer_plot._plot.getAxis("bottom"), x0, x1)) == [0.0, 1.0]


# ---- item 14: wording and small things -----------------------------------------------------

def test_a_vocabulary_difference_is_told_in_a_sentence(tmp_path):
    from fusion_gui.engine.distill.data import check_tokenizers, token_difference
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    assert token_difference(",", None, 11) == "token ',' is missing from the teacher's and has id 11 in the student's"
    assert token_difference(",", 11, None) == "token ',' has id 11 in the teacher's and is missing from the student's"
    assert token_difference(",", 3, 4) == "token ',' has id 3 in the teacher's and id 4 in the student's"
    for name, vocab in (("teacher", 128), ("student", 100)):
        save_model(build_model(tiny_config("llama", layers=1, hidden=16, vocab=vocab), seed=0), tmp_path / name)
    with pytest.raises(InputError) as caught:
        check_tokenizers(str(tmp_path / "teacher"), str(tmp_path / "student"))
    message = str(caught.value)
    assert "is id missing" not in message and "missing from the student's" in message


def test_the_tokenizer_choices_name_each_vocabulary_one_way(window, llama_family):
    window.models_panel.add_models([str(p) for p in llama_family])
    combo = window.tokenizer_panel.source_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert "Vocabulary of the base model" in texts and "Vocabulary of llama-ft1" in texts
    assert "Base model's vocabulary" not in texts
    assert "Vocabulary of llama-base" not in texts  # the base has its own entry already
    combo.setCurrentIndex(combo.findData("base"))
    assert window.tokenizer_panel.explanation.text().startswith("The vocabulary of the base model.")


def test_errors_name_the_path_the_user_typed_not_a_links_target(tmp_path, llama_family):
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.io.opener import open_model

    target = tmp_path / "store" / "blob-1234"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"\x01\x02")  # truncated
    link = tmp_path / "my-model"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(InputError) as caught:
        open_model(str(link))
    assert "my-model" in str(caught.value) and "blob-1234" not in str(caught.value)
    good = tmp_path / "ft-link"
    good.symlink_to(llama_family[1], target_is_directory=True)
    with open_model(str(good)) as reader:
        assert reader.label == "ft-link" and reader.path == good


def test_the_learning_rate_reads_in_scientific_notation(qtbot):
    from fusion_gui.ui.panels.distill_panel import DistillPanel

    panel = DistillPanel()
    qtbot.addWidget(panel)
    box = panel.learning_rate
    assert box.text() == "5e-5" and box.value() == pytest.approx(5e-5)
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "3e-4")
    box.interpretText()
    assert box.value() == pytest.approx(3e-4) and box.text() == "3e-4"
    box.stepBy(1)
    assert box.value() == pytest.approx(4e-4)
    alpha = panel.loss_rows["taid"].params["alpha"]
    assert alpha.text() == "alpha 5e-4" and alpha.value() == pytest.approx(5e-4)


def test_file_dialogs_open_in_the_last_folder_used(config_dir, qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from fusion_gui.ui.panels import plot_tabs
    from fusion_gui.ui.panels.distill_form import PathRow
    from fusion_gui.ui.settings import AppSettings, remembered_folder

    models = tmp_path / "models"
    (models / "teacher").mkdir(parents=True)
    opened = []

    def pick(parent, title, start="", *args, **kwargs):
        opened.append(start)
        return str(models / "teacher")

    def save_as(parent, title, start="", *args, **kwargs):
        opened.append(start)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", pick)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    first, second = PathRow("", "Teacher"), PathRow("", "Student")
    qtbot.addWidget(first)
    qtbot.addWidget(second)
    first._browse("Teacher", True, "")
    AppSettings().save()  # a window saving its own settings later keeps the folder
    second._browse("Student", True, "")
    plot_tabs._ask_and_save(second, lambda path: None, "merge-layers.png", "png")
    assert opened == ["", str(models), str(models / "merge-layers.png")]
    assert remembered_folder() == str(models)  # and in the next session


def test_a_new_rule_shows_the_value_it_holds_and_ok_accepts_it(qtbot):
    from PySide6.QtWidgets import QPushButton

    dialog = SettingEditorDialog("density", 0.5, None, num_layers=4)
    qtbot.addWidget(dialog)
    attention = next(b for b in dialog.findChildren(QPushButton) if b.text() == "+ Attention")
    attention.click()
    row = dialog.rules.currentRow()
    assert dialog.rules.item(row, 0).text() == "attn"
    assert [box.value() for box in dialog._anchor_boxes] == [0.5]
    assert dialog.rules.item(row, 1).text() == "0.5"  # what the anchor shows is in the rule
    dialog.accept()
    assert dialog.error.text() == ""
    assert dialog.result_setting() == [{"filter": "attn", "value": 0.5}, {"filter": None, "value": 0.5}]


def test_a_row_without_a_value_shows_no_made_up_number(qtbot):
    dialog = SettingEditorDialog("density", [{"filter": "mlp", "value": 0.3}], None, num_layers=4)
    qtbot.addWidget(dialog)
    fallback = dialog.rules.rowCount() - 1
    assert dialog.rules.item(fallback, 1).text() == ""
    dialog.rules.selectRow(fallback)
    assert dialog._anchor_boxes == [] and not dialog.anchor_count.isEnabled()
    dialog.rules.selectRow(0)
    assert [box.value() for box in dialog._anchor_boxes] == [0.3]
    dialog.accept()
    assert dialog.result_setting() == [{"filter": "mlp", "value": 0.3}]
