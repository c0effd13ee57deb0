"""The session model without Qt: every intent changes the state and emits once; recipes round-trip."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import dump_recipe, load_recipe, recipe_to_dict
from fusion_gui.session import CompareState, DistillState, EvalState, MergeSession, Session

try:  # every recipe of the engine's own tests, when they are there
    from test_recipe import RECIPES as ENGINE_RECIPES
except ImportError:  # pragma: no cover
    ENGINE_RECIPES = []


@pytest.fixture
def session():
    return MergeSession()


@pytest.fixture
def emitted(session):
    origins: list = []
    session.changed.connect(origins.append)
    return origins


@pytest.fixture
def messages(session):
    lines: list[str] = []
    session.message.connect(lines.append)
    return lines


def test_the_session_imports_no_qt():
    code = ("import sys, fusion_gui.session; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'superqt'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_add_models_makes_the_first_the_base_and_emits_once(session, emitted):
    assert session.add_models(["base", "a", "b"], origin="panel") == ["base", "a", "b"]
    assert emitted == ["panel"]
    assert session.state.base_model == "base"
    assert session.state.model_refs() == ["a", "b", "base"]
    assert session.add_models(["a"]) == []  # already there: no change, no signal
    assert emitted == ["panel"]


def test_add_models_to_a_method_without_a_base_adds_no_base(session, emitted):
    session.set_method("passthrough")
    session.add_models(["a"])
    assert session.state.base_model is None and session.state.model_refs() == ["a"]


def test_remove_models_forgets_the_base_too(session, emitted):
    session.add_models(["base", "a", "b"])
    session.remove_models(["base", "b"], origin="x")
    assert emitted[-1] == "x" and len(emitted) == 2
    assert session.state.model_refs() == ["a"] and session.state.base_model is None


def test_set_base_keeps_the_old_base_as_a_model(session, emitted):
    session.add_models(["base", "a"])
    session.set_base("a", origin="radio")
    assert emitted == [None, "radio"]
    assert session.state.base_model == "a" and set(session.state.model_refs()) == {"a", "base"}
    session.set_base("a")
    assert len(emitted) == 2  # the same base: nothing emitted


def test_set_method_fills_required_values_and_drops_other_methods_parameters(session, emitted, messages):
    session.add_models(["base", "a"])
    session.set_method("ties")
    session.set_model_setting("a", "density", 0.3)
    session.set_global("lambda", 2.0)
    count = len(emitted)
    session.set_method("slerp", origin="combo")
    assert emitted[count:] == ["combo"]
    assert session.recipe().parameters == {"t": 0.5}
    assert messages and "density" in messages[-1] and "lambda" in messages[-1]
    with pytest.raises(InputError):
        session.set_method("no-such-method")


def test_a_misspelt_parameter_is_kept_and_named(session, messages):
    session.load_recipe(load_recipe("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n"
                                    "    parameters: {weight: 1, desnity: 0.3}\n"))
    assert session.unknown_parameters() == ["desnity"]
    session.set_method("dare_ties")  # choosing a method never drops it without a word
    assert session.state.model_setting("a", "desnity") == 0.3
    assert session.unknown_parameters() == ["desnity"]
    session.drop_unknown_parameters()
    assert session.unknown_parameters() == [] and session.state.model_setting("a", "desnity") is None


@pytest.mark.parametrize("intent, args, field, value", [
    ("set_dtype", ("bfloat16",), "dtype", "bfloat16"),
    ("set_out_dtype", ("float16",), "out_dtype", "float16"),
    ("set_seed", (7,), "random_seed", 7),
    ("set_chat_template", ("chatml",), "chat_template", "chatml"),
    ("set_tokenizer", ("union", 64), "tokenizer", {"source": "union", "pad_to_multiple_of": 64}),
    ("set_global", ("weight", 0.5), "parameters", {"weight": 0.5}),
])
def test_each_setter_changes_one_thing_and_emits_once(session, emitted, intent, args, field, value):
    getattr(session, intent)(*args, origin="me")
    assert getattr(session.state, field) == value
    assert emitted == ["me"]
    getattr(session, intent)(*args, origin="me")
    assert emitted == ["me"]  # the same value again: nothing to say


def test_set_model_setting_writes_the_entry(session, emitted):
    session.add_models(["base", "a"])
    session.set_model_setting("a", "weight", [0, 1], origin="cell")
    assert session.state.model_setting("a", "weight") == [0, 1] and emitted[-1] == "cell"


@pytest.mark.parametrize("text", ENGINE_RECIPES)
def test_load_then_recipe_is_exact(session, text):
    recipe = load_recipe(text)
    session.load_recipe(recipe)
    assert recipe_to_dict(session.recipe()) == recipe_to_dict(recipe)


def test_opening_a_recipe_is_all_or_nothing(session, emitted, tmp_path):
    session.add_models(["base", "a"])
    session.set_global("weight", 0.4)
    before = dump_recipe(session.recipe())
    for text in ("merge_method: tie\nmodels: [a, b]\n",  # an unknown method
                 "merge_method: linear\nmodels: [a\n",  # broken YAML
                 "merge_method: linear\nmodels: [a]\nfoo: 1\n"):  # an unknown key
        path = tmp_path / "bad.yml"
        path.write_text(text)
        with pytest.raises(InputError):
            session.open_recipe(path)
        assert dump_recipe(session.recipe()) == before
    assert len(emitted) == 2  # only the two edits above


def test_relative_model_paths_resolve_against_the_recipe_folder(session, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "ft_a").mkdir(parents=True)
    (folder / "base").mkdir()
    (folder / "recipe.yml").write_text("merge_method: task_arithmetic\nbase_model: ./base\n"
                                       "models:\n  - model: ./ft_a\n  - model: org/hub-model\n"
                                       "tokenizer_source: ./ft_a\n")
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    notes = session.open_recipe(folder / "recipe.yml")
    refs = session.state.model_refs()
    assert str(folder / "ft_a") in refs and str(folder / "base") == session.state.base_model
    assert "org/hub-model" in refs  # a repo id stays as written
    assert session.state.tokenizer_source == str(folder / "ft_a")
    assert notes and "./ft_a" in notes[0] and str(folder) in notes[0]


def test_the_command_line_keeps_paths_that_exist_from_where_it_runs(tmp_path, monkeypatch):
    from fusion_gui.engine.merge.model_paths import resolve_model_paths

    (tmp_path / "here" / "m").mkdir(parents=True)
    (tmp_path / "recipe_dir" / "m").mkdir(parents=True)
    (tmp_path / "recipe_dir" / "only_there").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    recipe = load_recipe("merge_method: linear\nmodels: [m, only_there]\n")
    resolved, moved = resolve_model_paths(recipe, tmp_path / "recipe_dir", cwd_first=True)
    assert [e.model for e in resolved.models] == ["m", str(tmp_path / "recipe_dir" / "only_there")]
    assert list(moved) == ["only_there"]


def test_other_tabs_state_emits_per_field():
    session = Session()
    seen: list = []
    session.compare.events.model_a.connect(seen.append)
    session.compare.choose("a", "b")
    session.compare.choose("a", "c")
    assert seen == ["a"]
    models: list = []
    session.evaluate.events.models.connect(models.append)
    session.evaluate.set_models(["x", "y", "x"])
    session.evaluate.add_model("y")
    session.evaluate.add_model("z")
    assert models == [["x", "y"], ["x", "y", "z"]]
    outs: list = []
    session.distill.events.out_dir.connect(outs.append)
    session.distill.out_dir = "/o"
    assert outs == ["/o"]
    assert isinstance(session.compare, CompareState) and isinstance(session.evaluate, EvalState)
    assert isinstance(session.distill, DistillState)


def test_a_locked_session_changes_nothing_and_says_why(session, tmp_path, messages):
    """While a merge runs, no intent (a stray slider, an adapter from Extract LoRA, a recipe) changes it."""
    session.add_models(["a", "b"])
    session.set_method("ties")
    before = dump_recipe(session.recipe())
    session.locked = True
    assert session.add_models(["c"]) == []
    session.set_global("density", 0.1)
    session.set_method("linear")
    session.reset()
    path = tmp_path / "r.yml"
    path.write_text("merge_method: linear\nmodels: [x, y]\n")
    with pytest.raises(InputError, match="merge is running"):
        session.open_recipe(path)
    assert dump_recipe(session.recipe()) == before
    assert messages and all("merge is running" in m for m in messages[-4:])
    session.locked = False
    session.set_global("density", 0.1)
    assert dump_recipe(session.recipe()) != before
