"""Recipes: mergekit's YAML read as mergekit documents it, round-tripped, and bad keys named."""

import pytest

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import dump_recipe, load_recipe, recipe_to_dict
from fusion_gui.engine.merge.settings import evaluate_setting, resolve

TIES = """
models:
  - model: org/ft-a
    parameters:
      density: [1, 0.7, 0.1]
      weight: 1.0
  - model: org/ft-b
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1]
merge_method: ties
base_model: org/base
parameters:
  normalize: true
  int8_mask: true
dtype: float16
"""

SLERP = """
slices:
  - sources:
      - model: a
        layer_range: [0, 32]
      - model: b
        layer_range: [0, 32]
merge_method: slerp
base_model: a
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
"""

PASSTHROUGH = """
slices:
  - sources:
    - model: m
      layer_range: [0, 24]
  - sources:
    - model: m
      layer_range: [8, 32]
merge_method: passthrough
dtype: float16
random_seed: 7
"""

RECIPES = [TIES, SLERP, PASSTHROUGH]


@pytest.mark.parametrize("text", RECIPES)
def test_recipes_round_trip(text):
    recipe = load_recipe(text)
    again = load_recipe(dump_recipe(recipe))
    assert recipe_to_dict(again) == recipe_to_dict(recipe)
    assert dump_recipe(again) == dump_recipe(recipe)


def test_fields_are_read():
    r = load_recipe(TIES)
    assert r.merge_method == "ties" and r.base_model == "org/base" and r.dtype == "float16"
    assert [m.model for m in r.models] == ["org/ft-a", "org/ft-b"]
    assert r.models[0].parameters["density"] == [1, 0.7, 0.1]
    assert r.referenced_models() == ["org/ft-a", "org/ft-b", "org/base"]
    p = load_recipe(PASSTHROUGH)
    assert [s.sources[0].layer_range for s in p.slices] == [(0, 24), (8, 32)]
    assert p.random_seed == 7


def test_gradient_interpolates_at_i_over_n_minus_1():
    # layer i of N takes the gradient at t = i / (N - 1): anchors at 0, 0.5, 1 for three values
    g = [1.0, 0.7, 0.1]
    assert evaluate_setting(g, "x", 0.0) == 1.0
    assert evaluate_setting(g, "x", 0.5) == pytest.approx(0.7)
    assert evaluate_setting(g, "x", 1.0) == pytest.approx(0.1)
    assert evaluate_setting(g, "x", 0.25) == pytest.approx(0.85)
    # layer 1 of 4 -> t = 1/3 -> between anchors 0 and 1 of [0, 0.3, 0.7, 1] at 1/3 * 3 = 1.0
    assert evaluate_setting([0, 0.3, 0.7, 1], "x", 1 / 3) == pytest.approx(0.3)


def test_filters_first_substring_match_wins():
    setting = load_recipe(SLERP).parameters["t"]
    assert evaluate_setting(setting, "model.layers.0.self_attn.q_proj.weight", 0.0) == 0
    assert evaluate_setting(setting, "model.layers.0.mlp.up_proj.weight", 0.0) == 1
    assert evaluate_setting(setting, "model.norm.weight", 0.3) == 0.5
    only_attn = [{"filter": "self_attn", "value": 0.2}]
    assert evaluate_setting(only_attn, "model.norm.weight", 0.0) is None


def test_precedence_model_over_global():
    scopes = [{"weight": 0.3}, None, {"weight": 1.0, "density": 0.4}]
    assert resolve(scopes, "weight", "t", 0.0) == 0.3
    assert resolve(scopes, "density", "t", 0.0) == 0.4
    assert resolve(scopes, "gamma", "t", 0.0) is None


@pytest.mark.parametrize("text, words", [
    ("merge_method: linear\nmodels: [{model: a}]\nfoo: 1\n", ["'foo'"]),
    ("merge_method: linear\nmodels: [{model: a, wieght: 1}]\n", ["'wieght'", "models[0]"]),
    ("merge_method: linear\nmodels: [{model: a}]\nslices: []\nbar: 2\nbaz: 3\n", ["'bar'", "'baz'"]),
    ("models: [{model: a}]\n", ["merge_method"]),
    ("merge_method: linear\n", ["models", "slices"]),
    ("merge_method: linear\nmodels: [{model: a}]\ndtype: int8\n", ["int8"]),
    ("merge_method: passthrough\nslices:\n  - sources: [{model: a, layer_range: [4, 2]}]\n", ["layer_range"]),
    ("merge_method: linear\nmodels: [{model: a}]\nparameters: {weight: [{filter: x}]}\n", ["value"]),
    ("merge_method: linear\nmodels: [{model: a}\n", ["YAML"]),
])
def test_bad_recipes_name_the_problem(text, words):
    with pytest.raises(InputError) as info:
        load_recipe(text)
    for word in words:
        assert word in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.yml"):
        load_recipe(str(tmp_path / "nope.yml"))
