"""The prepare step of data-driven methods (methods.base.Preparation), through a stand-in method:
the merge loop passes each input's prepared tensors after the weights (re-ordered with the weights
in a tokenizer merge), adds the per-model values, says the step's notes at plan time, and closes
what the step returned. Nothing here is Fisher-specific: RegMean would plug in the same way."""

from __future__ import annotations

import pytest
import torch
from helpers import drain

from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge import merge, plan_merge
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.methods import base
from fusion_gui.engine.methods.base import MergeMethod, MethodResult, ParamSpec, Preparation, PrepareEstimate
from fusion_gui.events import Log

NAME = "model.layers.1.mlp.down_proj.weight"


class Copies:
    """Prepared tensors: a copy of each input's own weight, and the model's position as a value."""

    rows_follow_weights = True
    last_closed = False

    def __init__(self, readers, models):
        self.readers, self.models = readers, models

    def tensors_for(self, model, tensor):
        return (self.readers[model].get(tensor).float(),)

    def model_params(self, model):
        return {"k": float(self.models.index(model) + 1)}

    def close(self):
        Copies.last_closed = True


def _run(plan, cancel):
    yield Log("preparing the stand-in")
    return Copies(plan.readers, plan.recipe.referenced_models())


def _fn(tensors, base_index, params, per_model, generator):
    """sum_i k_i * w_i, after checking each prepared tensor is its input's weight, row for row."""
    n = len(per_model)
    assert len(tensors) == 2 * n
    for weight, copy in zip(tensors[:n], tensors[n:]):
        assert torch.equal(weight.float(), copy)
    return MethodResult(sum(p["k"] * w for p, w in zip(per_model, tensors[:n])))


@pytest.fixture
def stand_in(monkeypatch):
    method = MergeMethod(
        name="prepared_sum", pretty_name="k-weighted sum", fn=_fn,
        params=(ParamSpec("weight", "model", float, 1.0, applies_to_base=True),), base="none", min_models=2,
        prepare=Preparation(check=lambda plan: PrepareEstimate(notes=("stand-in: prepared first",),
                                                               warnings=("stand-in warning",)),
                            run=_run))
    monkeypatch.setitem(base._REGISTRY, method.name, method)
    Copies.last_closed = False
    return method


def test_prepared_tensors_and_values_reach_the_method_and_are_closed(stand_in, llama_family, tmp_path):
    _, ft1, ft2 = llama_family
    recipe = recipe_from_dict({"merge_method": "prepared_sum", "dtype": "float32",
                               "models": [{"model": str(ft1)}, {"model": str(ft2)}]})
    plan = plan_merge(recipe, tmp_path / "dry")
    plan.close()
    assert "stand-in: prepared first" in plan.summary.notes and "stand-in warning" in plan.summary.warnings

    _, events = drain(merge(recipe, tmp_path / "out"))
    assert any(isinstance(e, Log) and e.message == "preparing the stand-in" for e in events)
    assert Copies.last_closed
    with open_model(str(ft1)) as a, open_model(str(ft2)) as b, open_model(str(tmp_path / "out")) as out:
        torch.testing.assert_close(out.get(NAME), 1 * a.get(NAME).float() + 2 * b.get(NAME).float())


def test_prepared_rows_follow_the_weights_in_a_tokenizer_merge(stand_in, tmp_path):
    from fixtures.tiny_models import build_vocab_family

    models = build_vocab_family(tmp_path / "vocab")  # a has 33 embedding rows, b 40, in other orders
    recipe = recipe_from_dict({"merge_method": "prepared_sum", "dtype": "float32", "tokenizer_source": "union",
                               "models": [{"model": str(models["a"])}, {"model": str(models["b"])}]})
    drain(merge(recipe, tmp_path / "out"))  # _fn checks each prepared copy against its re-ordered weight
    assert Copies.last_closed
