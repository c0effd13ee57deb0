"""Metrics read from tensor names and values, checked against numbers worked out by hand."""

import json
import math

import numpy as np
import pytest
import torch

from fusion_gui.engine.inspect.analysis import LayerAccumulator, measure_tensor
from fusion_gui.engine.naming import layer_of, layer_template, tensor_kind


@pytest.mark.parametrize("name, layer, kind", [
    ("model.layers.12.self_attn.q_proj.weight", 12, "attn.q"),
    ("model.layers.3.mlp.down_proj.weight", 3, "mlp.down"),
    ("model.layers.0.input_layernorm.weight", 0, "norm"),
    ("model.embed_tokens.weight", None, "embed"),
    ("lm_head.weight", None, "lm_head"),
    ("transformer.h.7.attn.c_attn.weight", 7, "attn.qkv"),
    ("transformer.h.7.attn.c_proj.weight", 7, "attn.o"),
    ("transformer.h.7.mlp.c_proj.weight", 7, "mlp.down"),
    ("transformer.h.7.mlp.c_fc.weight", 7, "mlp.up"),
    ("transformer.ln_f.weight", None, "norm"),
    ("bert.encoder.layer.5.attention.self.key.weight", 5, "attn.k"),
    ("bert.encoder.layer.5.attention.output.dense.weight", 5, "attn.o"),
    ("bert.encoder.layer.5.intermediate.dense.weight", 5, "mlp.up"),
    ("bert.encoder.layer.5.output.dense.weight", 5, "mlp.down"),
    ("vit.encoder.layer.11.attention.attention.query.weight", 11, "attn.q"),
    ("down_blocks.2.attentions.0.transformer_blocks.0.attn1.to_q.weight", 2, "attn.q"),
])
def test_layer_and_kind_come_from_names(name, layer, kind):
    assert layer_of(name) == layer
    assert tensor_kind(name) == kind


def test_layer_template_replaces_only_the_layer_number():
    assert layer_template("model.layers.12.mlp.experts.3.w1") == (12, "model.layers.{}.mlp.experts.3.w1")
    assert layer_template("lm_head.weight") == (None, "lm_head.weight")


def test_measure_tensor_by_hand():
    base = torch.tensor([3.0, 4.0])  # norm 5
    a = torch.tensor([3.0, 7.0])  # change (0, 3): relative 0.6
    b = torch.tensor([7.0, 4.0])  # change (4, 0): relative 0.8, orthogonal to a's
    c = torch.tensor([3.0, 1.0])  # change (0, -3): opposite to a's
    merged = torch.tensor([5.0, 5.5])  # change (2, 1.5): norm 2.5 -> 0.5
    event, _ = measure_tensor("model.layers.1.mlp.up_proj.weight", ("a", "b"), [a, b], base, merged)
    np.testing.assert_allclose(event.input_change, [0.6, 0.8])
    assert event.result_change == pytest.approx(0.5)
    assert event.cosine == pytest.approx(0.0)
    assert event.layer == 1 and event.kind == "mlp.up" and event.numel == 2
    event, _ = measure_tensor("x", ("a", "c"), [a, c], base, None, count_sign_conflicts=True)
    assert event.cosine == pytest.approx(-1.0)
    assert event.sign_conflict == pytest.approx(0.5)  # element 1: +3 vs -3; element 0: no change
    assert math.isnan(event.result_change)


def test_layer_aggregate_is_the_norm_of_the_whole_layer():
    acc = LayerAccumulator(("a",))
    base1, base2 = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0, 12.0])
    for name, base, moved in (("layers.0.q", base1, torch.tensor([3.0, 7.0])),
                              ("layers.0.k", base2, torch.tensor([4.0, 0.0, 12.0]))):
        event, sums = measure_tensor(name, ("a",), [moved], base, moved, sign_conflict=0.5, kept_fraction=1.0)
        acc.add(event, sums)
    layer = acc.layer(0)
    # changes (0,3) and (4,0,0): whole-layer norm 5; base norm sqrt(25 + 144) = 13
    np.testing.assert_allclose(layer.input_change, [5 / 13])
    assert layer.result_change == pytest.approx(5 / 13)
    assert layer.sign_conflict == pytest.approx(0.5) and layer.tensors == 2


def test_diff_command_reports_every_layer(llama_family, tmp_path, run_cli):
    base, a, b = llama_family
    code, out, err = run_cli("diff", a, b, "--base", base, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [l["layer"] for l in report["layers"]] == [0, 1, 2, 3, None]
    assert all(len(l["change"]) == 2 and 0 < l["change"][0] < 0.1 for l in report["layers"])
    # independent noise: changes nearly orthogonal, signs disagree on about half the elements
    assert all(abs(l["cosine"]) < 0.2 and 0.35 < l["sign_conflict"] < 0.65 for l in report["layers"])
    csv_path = tmp_path / "d.csv"
    code, out, err = run_cli("diff", a, b, "--csv", csv_path)
    assert code == 0, err
    rows = csv_path.read_text().splitlines()
    assert rows[0].startswith("tensor,layer,kind") and len(rows) - 1 == len(report["tensors"])
    assert "layer" in out and "change" in out


def test_diff_of_a_model_with_itself_is_zero(llama_family, run_cli):
    code, out, err = run_cli("diff", llama_family[1], llama_family[1], "--json")
    assert code == 0, err
    assert all(l["change"] == [0.0] for l in json.loads(out)["layers"])
