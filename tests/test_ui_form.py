"""The form and the recipe are one thing: round trips, generated parameter widgets, curve editor."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox  # noqa: E402
from superqt import QLabeledDoubleSlider  # noqa: E402

from fusion_gui.engine.methods import registry  # noqa: E402
from fusion_gui.engine.merge.recipe import load_recipe, recipe_to_dict  # noqa: E402
from fusion_gui.engine.merge.settings import evaluate_setting  # noqa: E402
from fusion_gui.session.merge_state import MergeState  # noqa: E402
from fusion_gui.ui.panels.param_row import FileField  # noqa: E402
from fusion_gui.ui.panels.setting_editor import (  # noqa: E402
    SettingEditorDialog, layer_positions, parse_setting,
)
from ui_helpers import close_questions, config_dir, error_dialogs, no_leaked_windows, window  # noqa: E402,F401

try:  # every recipe of the engine's own tests, when they are there
    from test_recipe import RECIPES as ENGINE_RECIPES
except ImportError:  # pragma: no cover
    ENGINE_RECIPES = []

pytestmark = pytest.mark.gui

OWN_RECIPES = [
    "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 0.3}\n  - model: b\n"
    "    parameters: {weight: 0.7}\ndtype: float16\nout_dtype: bfloat16\n",
    "merge_method: linear\nmodels: [a, b]\nparameters: {weight: 0.5, normalize: false}\n",
    "merge_method: task_arithmetic\nbase_model: base\nmodels:\n  - model: base\n  - model: ft\n"
    "    parameters: {weight: [0, 0.5, 1]}\nparameters: {lambda: 0.8}\nrandom_seed: 3\n",
    "merge_method: ties\nbase_model: base\nmodels:\n  - model: x\n    parameters:\n"
    "      density: [{filter: self_attn, value: 0.3}, {filter: mlp, value: [0.2, 0.9]}, {value: 0.5}]\n"
    "      weight: 1\n  - model: y\n    parameters: {weight: 0.5, density: 0.7}\n"
    "parameters: {normalize: true, int8_mask: true}\ntokenizer_source: base\nname: my-merge\n",
    "merge_method: dare_ties\nbase_model: {model: {path: base}}\nmodels:\n  - model: {model: {path: ft}}\n"
    "    parameters: {weight: 1.0, density: 0.5}\nrandom_seed: 42\ndtype: bfloat16\n",
    "merge_method: slerp\nbase_model: a\nmodels: [a, b]\nparameters:\n  t: [0, 0.25, 1]\n",
    "merge_method: passthrough\nslices:\n  - sources: [{model: m, layer_range: [0, 2]}]\n"
    "  - sources: [{model: m, layer_range: [1, 4], parameters: {scale: 0.5}}]\n",
    "merge_method: slerp\nslices:\n  - sources:\n      - {model: a, layer_range: [0, 4]}\n"
    "      - {model: b, layer_range: [0, 4]}\n    base_model: a\n    parameters: {t: 0.3}\n"
    "base_model: a\nparameters: {t: 0.5}\nchat_template: chatml\ntokenizer: {source: base}\n",
]


@pytest.mark.parametrize("text", ENGINE_RECIPES + OWN_RECIPES)
def test_state_round_trip_is_exact(text):
    recipe = load_recipe(text)
    assert recipe_to_dict(MergeState.from_recipe(recipe).to_recipe()) == recipe_to_dict(recipe)


@pytest.mark.parametrize("text", ENGINE_RECIPES + OWN_RECIPES)
def test_open_recipe_then_save_gives_the_same_recipe(window, tmp_path, error_dialogs, text):
    source = tmp_path / "in.yml"
    source.write_text(text)
    assert window.open_recipe(source)
    assert error_dialogs == []
    saved = window.save_recipe(tmp_path / "out.yml")
    assert recipe_to_dict(load_recipe(str(saved))) == recipe_to_dict(load_recipe(text))
    assert window.recipe_panel.text() == saved.read_text()  # the YAML view follows the form
    shown = set(window.models_panel.display_refs())
    assert shown == set(load_recipe(text).referenced_models())


def test_editing_the_form_changes_the_recipe(window, llama_family):
    base, ft1, ft2 = map(str, llama_family)
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([base, ft1, ft2])
    row = window.strategy_panel._rows["lambda"]
    assert isinstance(row.value_widget, QLabeledDoubleSlider)
    row.value_widget.setValue(0.5)
    assert window.document.recipe().parameters["lambda"] == 0.5
    window.strategy_panel._rows["normalize"].value_widget.setChecked(False)
    assert window.document.recipe().parameters["normalize"] is False
    assert "lambda: 0.5" in window.recipe_panel.text()

    table = window.strategy_panel.model_table
    refs = window.document.state.refs_base_first()
    density_column = 1 + [s.name for s in registry()["ties"].model_params].index("density")
    table.item(refs.index(ft2), density_column).setText("0.2, 0.8")
    assert window.document.state.model_setting(ft2, "density") == [0.2, 0.8]
    table.item(refs.index(ft1), density_column).setText("7")  # out of range: refused, said why
    assert window.document.state.model_setting(ft1, "density") is None

    window.strategy_panel.set_global("lambda", [{"filter": "attn", "value": [1.0, 0.5]}, {"filter": None, "value": 1.0}])
    assert not window.strategy_panel._rows["lambda"].value_widget.isVisible()
    window.strategy_panel.set_global("lambda", None)
    assert "lambda" not in (window.document.recipe().parameters or {})


@pytest.mark.parametrize("method_name", sorted(registry()))
def test_the_form_is_generated_from_the_specs(window, method_name):
    method = registry()[method_name]
    window.strategy_panel.set_method(method_name)
    rows = window.strategy_panel._rows
    assert set(rows) == {p.name for p in method.global_params}
    for spec in method.global_params:
        widget = rows[spec.name].value_widget
        if spec.type is bool:
            assert isinstance(widget, QCheckBox)
        elif spec.type is float and spec.minimum is not None and spec.maximum is not None:
            assert isinstance(widget, QLabeledDoubleSlider)
        elif spec.type is float:
            assert isinstance(widget, QDoubleSpinBox)
        elif spec.type is Path:  # a file: a line edit with Browse…, no per-layer curve
            assert isinstance(widget, FileField) and rows[spec.name].curve_button.isHidden()
        # a per-layer curve only where the engine lets the value vary by layer or tensor
        assert rows[spec.name].curve_button.isHidden() == (not spec.per_tensor or spec.type is Path)
    headers = [window.strategy_panel.model_table.horizontalHeaderItem(c).text()
               for c in range(window.strategy_panel.model_table.columnCount())]
    assert headers == ["Model"] + [p.name for p in method.model_params]


def test_switching_methods_keeps_shared_values_and_drops_the_rest(window, llama_family):
    base, ft1, _ = map(str, llama_family)
    window.strategy_panel.set_method("ties")
    window.models_panel.add_models([base, ft1])
    window.strategy_panel.set_model_param(ft1, "weight", 0.4)
    window.strategy_panel.set_global("lambda", 2.0)
    window.strategy_panel.set_method("slerp")
    recipe = window.document.recipe()
    assert recipe.parameters == {"t": 0.5}  # lambda is not slerp's; t is required
    window.strategy_panel.set_method("passthrough")
    assert window.document.state.base_model is None  # passthrough takes no base
    window.strategy_panel.set_method("task_arithmetic")
    assert window.document.state.base_model == base  # the base comes back


def test_setting_editor_round_trips_rules_and_previews_exactly(qtbot):
    spec = registry()["slerp"].param("t")
    setting = [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
               {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"filter": None, "value": 0.5}]
    dialog = SettingEditorDialog("t", setting, spec, num_layers=6)
    qtbot.addWidget(dialog)
    assert dialog.setting() == setting
    dialog.rules.selectRow(0)
    assert dialog.anchor_count.value() == 5
    expected = [evaluate_setting(setting[0]["value"], "", t) for t in layer_positions(6)]
    assert dialog.preview.text().count(":") == 1 + 6
    for i, value in enumerate(expected):
        assert f"{i}: {value:.3g}" in dialog.preview.text()
    dialog.anchor_count.setValue(2)  # resampled from the curve: its ends stay
    assert dialog.setting()[0]["value"] == [0.0, 1.0]


def test_setting_editor_builds_filters_from_the_buttons(qtbot):
    spec = registry()["ties"].param("lambda")
    dialog = SettingEditorDialog("lambda", 1.0, spec, num_layers=4)
    qtbot.addWidget(dialog)
    assert dialog.setting() == 1.0
    dialog.add_rule("attn", "0.5")
    dialog.add_rule("mlp", "0, 2")
    assert dialog.setting() == [{"filter": "attn", "value": 0.5}, {"filter": "mlp", "value": [0, 2]},
                                {"filter": None, "value": 1.0}]
    dialog.rules.item(1, 1).setText("9")  # above lambda's maximum of 4
    with pytest.raises(ValueError, match="at most"):
        dialog.setting()


@pytest.mark.parametrize("text, expected", [
    ("0.5", 0.5), ("0, 0.5, 1", [0, 0.5, 1]), ("[1, 2]", [1, 2]), ("true", True),
    ("[{filter: mlp, value: 0.3}]", [{"filter": "mlp", "value": 0.3}]),
])
def test_parse_setting(text, expected):
    assert parse_setting(text) == expected
