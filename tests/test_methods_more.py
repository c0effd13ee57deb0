"""The rest of mergekit 0.1.5's methods (NuSLERP, Multi-SLERP, Karcher, Model Stock, SCE,
NearSwap, Arcee Fusion, RAM, RAM+): their math on small hand-made tensors, with the expected
values worked out here, and one end-to-end merge of each through the engine."""

import math

import pytest
import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.methods import get_method

F64 = torch.float64


def run(name, tensors, base_index=0, per_model=None, seed=None, **params):
    method = get_method(name)
    full = {p.name: p.default for p in method.global_params}
    full.update(params)
    per_model = per_model if per_model is not None else [{}] * len(tensors)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return method.fn(tensors, base_index, full, per_model, gen).tensor


def t64(*values):
    return torch.tensor(values, dtype=F64)


def close(got, expected, tol=1e-9):
    torch.testing.assert_close(got, expected.to(got.dtype), rtol=tol, atol=tol)


# mergekit 0.1.5's names, scopes and defaults: (name, scope, applies_to_base, default, required)
_SPECS = {
    "nuslerp": [("weight", "model", False, None, True), ("nuslerp_row_wise", "global", False, False, False),
                ("nuslerp_flatten", "global", False, True, False)],
    "multislerp": [("weight", "model", False, None, True), ("normalize_weights", "global", False, True, False),
                   ("eps", "global", False, 1e-8, False)],
    "karcher": [("max_iter", "global", False, 10, False), ("tol", "global", False, 1e-5, False)],
    "model_stock": [("filter_wise", "global", False, False, False)],
    "sce": [("select_topk", "global", False, 1.0, False), ("int8_mask", "global", False, False, False)],
    "nearswap": [("t", "global", False, None, True)],
    "arcee_fusion": [],
    "ram": [("epsilon", "global", False, 1e-5, False)],
    "ramplus_tl": [("r", "global", False, 0.1, False), ("alpha", "global", False, 0.2, False),
                   ("epsilon", "global", False, 1e-5, False)],
}
# base policy, min models (base counted), max models
_CONTRACTS = {"nuslerp": ("optional", 2, 3), "multislerp": ("optional", 1, None), "karcher": ("none", 1, None),
              "model_stock": ("required", 3, None), "sce": ("required", 1, None),
              "nearswap": ("required", 2, 2), "arcee_fusion": ("required", 2, 2),
              "ram": ("required", 1, None), "ramplus_tl": ("required", 1, None)}


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_names_parameters_and_contracts_are_mergekits(name):
    m = get_method(name)
    got = [(p.name, p.scope, p.applies_to_base, p.default, p.required) for p in m.params]
    assert sorted(got, key=str) == sorted(_SPECS[name], key=str)
    assert (m.base, m.min_models, m.max_models) == _CONTRACTS[name]
    assert m.description and m.reference.startswith("https://") and m.pretty_name
    assert m.random == (name == "arcee_fusion") and not m.sign_election
    for p in m.params:
        assert p.help
        if p.type is not bool:
            assert p.minimum is not None


# ----------------------------------------------------------------------------- NuSLERP

def test_nuslerp_orthogonal_unit_vectors_without_and_with_base():
    e1, e2 = t64(1, 0), t64(0, 1)
    pm = [{"weight": 1.0}, {"weight": 3.0}]  # t = 3 / (1 + 3): the second model's share
    t = 0.75
    expected = t64(math.cos(t * math.pi / 2), math.sin(t * math.pi / 2))
    close(run("nuslerp", [e1, e2], None, pm), expected)
    # with a base, the changes from it are slerped and added back, wherever the base sits
    base = t64(5, -2)
    close(run("nuslerp", [base, base + e1, base + e2], 0, [{}] + pm), base + expected)
    close(run("nuslerp", [base + e1, base, base + e2], 1, [pm[0], {}, pm[1]]), base + expected)
    # weights summing to ~0 give t = 0.5
    half = run("nuslerp", [e1, e2], None, [{"weight": 0.0}, {"weight": 0.0}])
    close(half, t64(math.sqrt(0.5), math.sqrt(0.5)))


def test_nuslerp_rows_columns_and_collinear_lerp():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    b = torch.tensor([[0.0, 1.0], [2.0, 0.0]], dtype=F64)
    pm = [{"weight": 0.5}, {"weight": 0.5}]
    c = math.cos(math.pi / 4)
    # row by row: row 0 is a quarter turn (slerp), row 1 is collinear (linear interpolation)
    rows = run("nuslerp", [a, b], None, pm, nuslerp_flatten=False)
    close(rows, torch.tensor([[c, c], [1.5, 0.0]], dtype=F64))
    # column by column: column 0 is (1, 1) -> (0, 2), column 1 is (0, 0) -> (1, 0)
    cols = run("nuslerp", [a, b], None, pm, nuslerp_flatten=False, nuslerp_row_wise=True)
    # column 0: the angle between (1,1) and (0,2) is pi/4, so at t=1/2 each coefficient is
    # sin(pi/8) / sin(pi/4); column 1 has a zero vector: its cosine is 0, so it is slerped
    # through a right angle: sin(pi/4) * (1, 0)
    k = math.sin(math.pi / 8) / math.sin(math.pi / 4)
    close(cols, torch.tensor([[k * 1 + k * 0, c * 1], [k * 1 + k * 2, 0.0]], dtype=F64))
    # flattened (the default): one 4-vector
    flat = run("nuslerp", [a, b], None, pm)
    va, vb = a.reshape(-1), b.reshape(-1)
    theta = math.acos(float(va @ vb) / (va.norm() * vb.norm()))
    w = math.sin(theta / 2) / math.sin(theta)
    close(flat, (w * va + w * vb).reshape(2, 2))


def test_nuslerp_needs_exactly_two_models_besides_the_base():
    x = t64(1, 0)
    with pytest.raises(InputError, match="exactly two"):
        run("nuslerp", [x, x, x], None, [{"weight": 1.0}] * 3)
    with pytest.raises(InputError, match="exactly two"):
        run("nuslerp", [x, x], 0, [{}, {"weight": 1.0}])


# -------------------------------------------------------------------------- Multi-SLERP

def test_multislerp_is_the_normalized_weighted_direction_times_the_mean_norm():
    # Projected at the weighted mean direction m = c / |c| (c = sum w_i u_i), the weighted
    # tangent vectors sum to c - (c . m) m = 0, so the result is m times sum w_i |x_i|.
    x1, x2 = t64(2, 0), t64(0, 4)
    pm = [{"weight": 1.0}, {"weight": 3.0}]
    direction = t64(0.25, 0.75) / math.sqrt(0.25**2 + 0.75**2)
    close(run("multislerp", [x1, x2], None, pm), direction * (0.25 * 2 + 0.75 * 4), 1e-7)
    close(run("multislerp", [x1, x2], None, pm, normalize_weights=False),
          direction * (1 * 2 + 3 * 4), 1e-7)
    base = t64(1, 1)
    close(run("multislerp", [base, base + x1, base + x2], 0, [{}] + pm),
          base + direction * 3.5, 1e-7)
    # equal weights on two orthogonal unit vectors: the slerp midpoint
    c = math.sqrt(0.5)
    close(run("multislerp", [t64(1, 0), t64(0, 1)], None, [{"weight": 1.0}] * 2), t64(c, c), 1e-7)


def test_multislerp_single_model_antipodes_and_cancelling_directions():
    x = t64(3, 4)
    # one model besides the base: that model, unchanged
    assert torch.equal(run("multislerp", [t64(9, 9), x], 0, [{}, {"weight": 0.5}]), x)
    # two opposite directions with equal weights: linear interpolation
    close(run("multislerp", [t64(1, 0), t64(-3, 0)], None, [{"weight": 1.0}] * 2), t64(-1, 0))
    s = math.sqrt(3) / 2
    three = [t64(1, 0), t64(-0.5, s), t64(-0.5, -s)]
    with pytest.raises(InputError, match="cancel out"):
        run("multislerp", three, None, [{"weight": 1.0}] * 3)


# -------------------------------------------------------------------------- Karcher mean

def test_karcher_mean_of_points_on_a_circle_is_their_mean_angle():
    # On a great circle (within a half-circle) the Riemannian mean is the mean angle, and
    # the norm is the mean of the norms.
    angles, norms = (0.0, 0.5, 1.3), (1.0, 2.0, 3.0)
    pts = [n * t64(math.cos(a), math.sin(a), 0.0) for a, n in zip(angles, norms)]
    mean = sum(angles) / 3
    close(run("karcher", pts, None), 2.0 * t64(math.cos(mean), math.sin(mean), 0.0), 1e-9)
    # with no iteration the direction is the (normalized) Euclidean mean of the directions
    first = run("karcher", pts, None, max_iter=0)
    euclid = sum(p / p.norm() for p in pts)
    close(first, 2.0 * euclid / euclid.norm())


def test_karcher_zero_inputs_and_single_model():
    # a zero tensor has no direction but its norm (0) still counts in the scale
    got = run("karcher", [t64(0, 0), t64(1, 0), t64(0, 1)], None)
    close(got, (2 / 3) * t64(math.sqrt(0.5), math.sqrt(0.5)), 1e-9)
    assert torch.equal(run("karcher", [t64(0, 0), t64(0, 0)], None), t64(0, 0))
    x = t64(1, 2)
    assert run("karcher", [x], None) is x
    # float32 inputs stay float32
    assert run("karcher", [x.float(), 2 * x.float()], None).dtype == torch.float32


# --------------------------------------------------------------------------- Model Stock

def test_model_stock_ratio_from_the_angle_between_changes():
    # Two changes at 60 degrees: cos = 1/2, k = 2, so t = k cos / (1 + (k - 1) cos) = 2/3,
    # and the result is base + t * (mean change).
    base = t64(1, -1)
    d1, d2 = t64(1, 0), t64(0.5, math.sqrt(3) / 2)
    t = 2 * 0.5 / (1 + 0.5)
    close(run("model_stock", [base, base + d1, base + d2], 0), base + t * (d1 + d2) / 2)
    # three changes with pairwise cosines 0, 1/sqrt2, 1/sqrt2
    d = [t64(1, 0, 0), t64(0, 1, 0), t64(1, 1, 0)]
    cos = (0 + 2 / math.sqrt(2)) / 3
    t = 3 * cos / (1 + 2 * cos)
    base = t64(0.5, 0.5, 0.5)
    close(run("model_stock", [base + d[0], base, base + d[1], base + d[2]], 1),
          base + t * (d[0] + d[1] + d[2]) / 3)


def test_model_stock_filter_wise_and_opposite_changes():
    base = torch.zeros(2, 2, dtype=F64)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    b = torch.tensor([[0.0, 1.0], [3.0, 0.0]], dtype=F64)
    # row 0: orthogonal changes, t = 0 (keep the base); row 1: same direction, t = 1 (average)
    got = run("model_stock", [base, a, b], 0, filter_wise=True)
    close(got, torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=F64))
    # whole tensor: (1,0,1,0) . (0,1,3,0) = 3, so cos = 3 / (sqrt2 sqrt10), t = 2 cos / (1 + cos)
    cos = 3 / (math.sqrt(2) * math.sqrt(10))
    close(run("model_stock", [base, a, b], 0), (2 * cos / (1 + cos)) * (a + b) / 2)
    # opposite changes make 1 + (k - 1) cos = 0: the base is kept
    x = t64(2, 3)
    close(run("model_stock", [x, x + t64(1, 0), x - t64(1, 0)], 0), x)


# ----------------------------------------------------------------------------------- SCE

def test_sce_select_by_variance_weight_by_mean_square_erase_by_sign():
    base = t64(1, 1, 1, 1)
    d1, d2, d3 = t64(1, 0.1, -2, 0.5), t64(1, -0.1, 2, 0.5), t64(1, 0.3, -1, -1)
    models = [base, base + d1, base + d2, base + d3]
    # Population variances across the models: e0 0, e1 0.08/3, e2 78/27, e3 0.5. Three are
    # non-zero; select_topk 0.7 keeps int(3 * 0.7) = 2 of them: e2 and e3.
    # Masked changes (0,0,-2,.5), (0,0,2,.5), (0,0,-1,-1): mean squares 17/16, 17/16, 1/2,
    # i.e. weights 17, 17, 8 (over 42). Signs: e2 sums to -1 (keep d1, d3); e3 sums to 0,
    # which elects + (keep d1, d2).
    e2 = (17 * -2 + 8 * -1) / (17 + 8)
    e3 = (17 * 0.5 + 17 * 0.5) / (17 + 17)
    close(run("sce", models, 0, select_topk=0.7), base + t64(0, 0, e2, e3))
    # Without selection: weights are the full mean squares 5.26/4, 5.26/4, 3.09/4.
    w1, w3 = 5.26, 3.09
    e1 = (w1 * 0.1 + w3 * 0.3) / (w1 + w3)  # sum +0.3 elects +: d1 and d3
    e2 = (w1 * -2 + w3 * -1) / (w1 + w3)
    e3 = (w1 * 0.5 * 2) / (2 * w1)
    close(run("sce", models, 0), base + t64(1, e1, e2, e3))
    # the base may sit anywhere; no other model gives the base
    close(run("sce", [base + d1, base + d2, base, base + d3], 2, select_topk=0.7),
          base + t64(0, 0, -42 / 25, 0.5))
    assert torch.equal(run("sce", [base], 0), base)


# ------------------------------------------------------------------------------ NearSwap

def test_nearswap_takes_near_values_and_blends_far_ones():
    base = t64(1, 1, 1, 1)
    change = t64(0.05, -0.2, 1.0, 0.0)
    # share of the other model: min(1, t / |change|) = 1, 0.5, 0.1, 1
    expected = base + t64(0.05, -0.1, 0.1, 0.0)
    close(run("nearswap", [base, base + change], 0, t=0.1), expected)
    close(run("nearswap", [base + change, base], 1, t=0.1), expected)
    close(run("nearswap", [base, base + change], 0, t=0.0), base)
    with pytest.raises(InputError, match="exactly one"):
        run("nearswap", [base, base, base], 0, t=0.1)


# -------------------------------------------------------------------------- Arcee Fusion

def test_arcee_fusion_keeps_only_outlier_importance():
    # One row: the KL factor is one positive number, so importance ranks like |change|.
    # Of 9 sorted |changes| .1 .. .8, 5: q1 = .3 (index 2), median = .5, q3 = .7, so the
    # threshold is (.5 + 1.5 * .4) * KL = 1.1 * KL and only the change of 5 is taken.
    base = torch.linspace(-1, 1, 9, dtype=F64)
    change = t64(0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8, 5.0)
    got = run("arcee_fusion", [base, base + change], 0)
    expected = base.clone()
    expected[8] = base[8] + change[8]
    close(got, expected)
    # rows whose softmax does not change have zero importance; a 2-D case where row 0
    # changes by a constant (same softmax, KL 0) and row 1 by an outlier pattern
    change = t64(0.1, -0.2, 0.3, -0.4, 0.5, -0.65, 0.7, -0.8, 5.0)
    base2 = torch.zeros(2, 9, dtype=F64)
    other = torch.stack([torch.full((9,), 0.25, dtype=F64), change])
    got = run("arcee_fusion", [base2, other], 0)
    # 18 scores: row 0's nine zeros and row 1's |change| * KL; sorted, q1 is index
    # int(.25 * 17) = 4 (a zero), the median index 8 (a zero), q3 index 12 (.4 KL): the
    # threshold 1.5 * .4 KL = .6 KL keeps .65, .7, .8 and 5 of row 1, none of row 0
    keep = torch.tensor([False] * 5 + [True] * 4)
    expected = torch.stack([base2[0], torch.where(keep, change, torch.zeros_like(change))])
    close(got, expected)


def test_arcee_fusion_large_tensors_sample_quantiles_by_seed():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1100, 1000, generator=g)
    other = base + 0.01 * torch.randn(1100, 1000, generator=g)
    one = run("arcee_fusion", [base, other], 0, seed=5)
    assert torch.equal(one, run("arcee_fusion", [base, other], 0, seed=5))
    taken = one != base  # where the mask is 0 the result is the base exactly
    assert 0.001 < taken.float().mean() < 0.5  # the outliers only


# ---------------------------------------------------------------------------- RAM, RAM+

def test_ram_averages_each_element_over_the_models_that_changed_it():
    base = t64(1, 1, 1, 1)
    d1, d2, d3 = t64(1, 0.5, 0, 2), t64(1, 0, 0, -1), t64(0, 0, 1e-6, 1)
    models = [base, base + d1, base + d2, base + d3]
    # e0: two models (mean 1); e1: d1 alone (0.5); e2: 1e-6 is below epsilon (nothing);
    # e3: three models (2 - 1 + 1) / 3
    close(run("ram", models, 0), base + t64(1, 0.5, 0, 2 / 3))
    close(run("ram", [base + d1, base, base + d2, base + d3], 1), base + t64(1, 0.5, 0, 2 / 3))
    # epsilon 0.6 also ignores d1's 0.5
    close(run("ram", models, 0, epsilon=0.6), base + t64(1, 0, 0, 2 / 3))


def test_ramplus_scales_unique_changes_by_the_shared_ratio():
    base = t64(1, 1, 1, 1)
    d1, d2, d3 = t64(1, 0.5, 0, 2), t64(1, 0, 0, -1), t64(0, 0, 1e-6, 1)
    models = [base, base + d1, base + d2, base + d3]
    # d1 changed e0, e3 with others and e1 alone: rho = 2 / 1. With r = 0.5 and alpha = 3,
    # its unique change is scaled by 1 + 0.5 * min(2, 3) = 2; with the defaults (r 0.1,
    # alpha 0.2) by 1 + 0.1 * 0.2.
    got = run("ramplus_tl", models, 0, r=0.5, alpha=3.0)
    close(got, base + t64(1, 1.0, 0, 2 / 3), 1e-6)
    close(run("ramplus_tl", models, 0), base + t64(1, 0.5 * 1.02, 0, 2 / 3), 1e-6)
    # mergekit's float32 boost makes the sum float32; the result is rounded to the input dtype
    half = run("ramplus_tl", [m.bfloat16() for m in models], 0)
    assert half.dtype == torch.bfloat16
    assert half[1] == torch.tensor(1 + 0.5 * 1.02).bfloat16() and half[0] == 2


# ------------------------------------------------------------------------------- End to end

def _recipes(base, a, b):
    two = [{"model": str(a), "parameters": {"weight": 0.4}},
           {"model": str(b), "parameters": {"weight": 0.6}}]
    plain = [{"model": str(a)}, {"model": str(b)}]
    return {
        "nuslerp": {"merge_method": "nuslerp", "base_model": str(base), "models": two},
        "multislerp": {"merge_method": "multislerp", "base_model": str(base), "models": two},
        "karcher": {"merge_method": "karcher", "models": plain + [{"model": str(base)}]},
        "model_stock": {"merge_method": "model_stock", "base_model": str(base), "models": plain},
        "sce": {"merge_method": "sce", "base_model": str(base), "models": plain,
                "parameters": {"select_topk": 0.5}},
        "nearswap": {"merge_method": "nearswap", "base_model": str(base), "models": [{"model": str(a)}],
                     "parameters": {"t": 0.001}},
        "arcee_fusion": {"merge_method": "arcee_fusion", "base_model": str(base), "models": [{"model": str(a)}],
                         "dtype": "bfloat16"},
        "ram": {"merge_method": "ram", "base_model": str(base), "models": plain},
        "ramplus_tl": {"merge_method": "ramplus_tl", "base_model": str(base), "models": plain,
                       "dtype": "bfloat16"},
    }


@pytest.mark.parametrize("name", sorted(_SPECS))
def test_end_to_end_merge_loads_and_matches_the_method(name, llama_family, tmp_path):
    from transformers import AutoModelForCausalLM

    from fusion_gui.engine.io.opener import open_model
    from fusion_gui.engine.merge import merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict

    base, a, b = llama_family
    data = _recipes(base, a, b)[name]
    out = tmp_path / "out"
    gen = merge(recipe_from_dict(data), out)
    while True:
        try:
            next(gen)
        except StopIteration:
            break
    model = AutoModelForCausalLM.from_pretrained(out)
    logits = model(torch.tensor([[1, 5, 9, 12]])).logits
    assert torch.isfinite(logits).all()

    # one tensor against the method called directly, in recipe order (base appended when
    # the models do not list it), with the recipe's dtype
    name_ = "model.layers.1.mlp.down_proj.weight"
    order = [m["model"] for m in data["models"]]
    if data.get("base_model") and data["base_model"] not in order:
        order.append(data["base_model"])
    dtype = torch.bfloat16 if data.get("dtype") == "bfloat16" else torch.float32
    inputs = []
    for ref in order:
        with open_model(ref) as reader:
            inputs.append(reader.get(name_).to(dtype))
    m = get_method(name)
    base_index = order.index(data["base_model"]) if data.get("base_model") and m.base != "none" else None
    params = {p.name: p.default for p in m.global_params}
    params.update(data.get("parameters", {}))
    per_model = [({} if k == base_index else next((e.get("parameters", {}) for e in data["models"]
                                                     if e["model"] == ref), {}))
                 for k, ref in enumerate(order)]
    expected = m.fn(inputs, base_index, params, per_model, None).tensor.to(dtype)
    with open_model(str(out)) as reader:
        got = reader.get(name_)
    assert got.dtype == dtype
    assert torch.equal(got, expected)
    with open_model(str(base)) as reader:
        assert not torch.equal(got, reader.get(name_).to(dtype))  # something was merged
