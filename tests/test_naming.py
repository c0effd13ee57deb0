"""Tensor names are read in one place (engine/naming.py): the models table and the plan count
layers the same way, including on names whose other numbers are not layer indices."""

import json

import pytest
import torch
from safetensors.torch import save_file

from fusion_gui.engine.merge.plan import MergeOptions, plan_merge
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.naming import comes_before_layers, count_layers, is_embedding_or_head, layer_of, module_of

# A LLaVA-style checkpoint: two decoder layers, and a projector whose Sequential index (2) and an
# expert number (7) are not layer indices.
NAMES = ["model.embed_tokens.weight", "model.mm_projector.0.weight", "model.mm_projector.2.weight",
         "model.layers.0.mlp.experts.7.w1.weight", "model.layers.1.mlp.experts.7.w1.weight",
         "model.norm.weight", "lm_head.weight"]


def _checkpoint(folder, seed):
    folder.mkdir()
    gen = torch.Generator().manual_seed(seed)
    save_file({n: torch.randn(4, 4, generator=gen) for n in NAMES}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlavaForCausalLM"]}))
    return str(folder)


def test_numbers_that_are_not_layer_indices_do_not_count():
    assert [layer_of(n) for n in NAMES] == [None, None, None, 0, 1, None, None]
    assert count_layers(NAMES) == 2
    assert count_layers(["lm_head.weight"]) == 0
    assert comes_before_layers("model.embed_tokens.weight") and not comes_before_layers("model.norm.weight")
    assert is_embedding_or_head("lm_head.weight") and not is_embedding_or_head("model.layers.0.mlp.w1.weight")
    assert module_of("model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj"


def test_the_models_table_and_the_plan_count_the_same_layers(tmp_path):
    pytest.importorskip("PySide6")
    from fusion_gui.ui.panels.models_panel import describe_model

    a, b = _checkpoint(tmp_path / "a", 0), _checkpoint(tmp_path / "b", 1)
    table = describe_model(a).num_layers
    recipe = recipe_from_dict({"merge_method": "linear", "models": [{"model": a}, {"model": b}],
                              "parameters": {"weight": 0.5}})
    plan = plan_merge(recipe, tmp_path / "out", MergeOptions(device="cpu"))
    try:
        # The table's old rule (the first ".N." in any name) counted the projector's index: 3 layers.
        assert table == plan.summary.num_layers == 2
    finally:
        plan.close()
