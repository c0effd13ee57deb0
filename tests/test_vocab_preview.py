"""The app's pre-flight reuses an unchanged output vocabulary (a parameter edit must not reload every
tokenizer: for three 128k-token models that took tens of seconds per edit); a merge builds its own."""

import os

import pytest
import yaml

from fusion_gui.engine.merge import plan_merge
from fusion_gui.engine.merge.recipe import load_recipe


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from fixtures.tiny_models import build_vocab_family

    return build_vocab_family(tmp_path_factory.mktemp("vocab-preview"))


def union_recipe(family, weight: float):
    data = {"merge_method": "linear", "dtype": "float32", "base_model": str(family["base"]),
            "tokenizer": {"source": "union"},
            "models": [{"model": str(family[k]), "parameters": {"weight": weight}} for k in ("base", "a", "b")]}
    return load_recipe(yaml.safe_dump(data, sort_keys=False))


def vocabulary_of(recipe, out, preview: bool):
    plan = plan_merge(recipe, out, preview=preview)
    plan.close()
    return plan.vocabulary


def test_a_parameter_edit_reuses_the_previews_vocabulary(family, tmp_path):
    first = vocabulary_of(union_recipe(family, 0.5), tmp_path / "out", preview=True)
    edited = vocabulary_of(union_recipe(family, 0.7), tmp_path / "out", preview=True)
    assert edited is first  # same models, same tokenizer settings: nothing was reloaded
    assert "<b_only>" in first.vocab and first.size == 34


def test_a_merge_and_a_changed_tokenizer_build_anew(family, tmp_path):
    preview = vocabulary_of(union_recipe(family, 0.5), tmp_path / "out", preview=True)
    merge_plan = vocabulary_of(union_recipe(family, 0.5), tmp_path / "out", preview=False)
    assert merge_plan is not preview and merge_plan.vocab == preview.vocab
    config = family["b"] / "tokenizer_config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the file changed on disk
    assert vocabulary_of(union_recipe(family, 0.5), tmp_path / "out", preview=True) is not preview
