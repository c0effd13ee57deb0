"""Merge-method math on small hand-made tensors; expected values are worked out here."""

import math

import pytest
import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.methods import get_method, registry
from fusion_gui.engine.methods import sparsify as sp

F64 = torch.float64


def run(name, tensors, base_index=0, per_model=None, seed=None, **params):
    method = get_method(name)
    full = {p.name: p.default for p in method.global_params}
    full.update(params)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return method.fn(tensors, base_index, full, per_model, gen)


def t64(*values):
    return torch.tensor(values, dtype=F64)


def test_registry_names_defaults_and_unknown_name():
    assert set(registry()) == {
        "linear", "slerp", "passthrough", "task_arithmetic", "ties", "dare_ties", "dare_linear",
        "breadcrumbs", "breadcrumbs_ties", "della", "della_linear", "nuslerp", "multislerp",
        "karcher", "model_stock", "sce", "nearswap", "arcee_fusion", "ram", "ramplus_tl", "fisher"}
    # mergekit's per-method defaults for normalize / rescale
    expect = {"task_arithmetic": (False, False), "ties": (True, False),
              "dare_ties": (False, True), "dare_linear": (False, True),
              "breadcrumbs": (False, False), "breadcrumbs_ties": (False, False),
              "della": (True, True), "della_linear": (False, True)}
    for name, (normalize, rescale) in expect.items():
        m = get_method(name)
        assert (m.param("normalize").default, m.param("rescale").default) == (normalize, rescale)
        assert m.param("weight").required and m.param("density").default == 1.0
        assert m.base == "required" and m.random == name.startswith(("dare", "della"))
        assert m.sign_election == (name in ("ties", "dare_ties", "breadcrumbs_ties", "della"))
    assert get_method("breadcrumbs").param("gamma").default == 0.01
    assert get_method("della").param("epsilon").default == 0.15
    assert get_method("linear").param("weight").applies_to_base
    with pytest.raises(InputError, match="known methods are: arcee_fusion, breadcrumbs, .*ties"):
        get_method("nope")


def test_linear_weighted_mean_and_sum_keep_dtype():
    a, b, c = t64(1, 2), t64(3, 6), t64(-1, 0)
    pm = [{"weight": 1.0}, {"weight": 2.0}, {"weight": 1.0}]
    mean = run("linear", [a, b, c], None, pm).tensor
    assert torch.allclose(mean, t64((1 + 6 - 1) / 4, (2 + 12) / 4))
    total = run("linear", [a, b, c], None, pm, normalize=False).tensor
    assert torch.allclose(total, t64(6, 14))
    half = run("linear", [a.bfloat16(), b.bfloat16()], None, pm[:2]).tensor
    assert half.dtype == torch.bfloat16
    assert torch.equal(half.double(), t64(7 / 3, 14 / 3).bfloat16().double())
    with pytest.raises(InputError, match="sum to zero"):
        run("linear", [a, b], None, [{"weight": 1.0}, {"weight": -1.0}])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_linear_in_cache_sized_slices_equals_mergekits_arithmetic_bit_for_bit(dtype):
    """mergekit 0.1.5: zeros in float32 (float64 stays), addcmul_(x, w) per input, / sum(w), back to
    the input dtype. Our slices must give the same bits, across slice boundaries and shapes."""
    from fusion_gui.engine.methods.linear import CHUNK

    g = torch.Generator().manual_seed(0)
    weights = [0.3, 0.7123, 1.37]
    for shape in ((7,), (CHUNK * 2 + 5,), (513, 1025), ()):
        xs = [torch.randn(shape, generator=g).to(dtype) for _ in weights]
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        w = torch.tensor(weights, dtype=compute)
        for normalize in (True, False):
            expected = torch.zeros(shape, dtype=compute)
            for x, wi in zip(xs, w):
                expected.addcmul_(x.to(compute), wi)
            expected = (expected / w.sum() if normalize else expected).to(dtype)
            got = run("linear", xs, None, [{"weight": x} for x in weights], normalize=normalize).tensor
            assert got.dtype == dtype and got.shape == expected.shape
            assert torch.equal(got, expected), (shape, normalize)


def test_slerp_endpoints_orthogonal_and_collinear():
    v0, v1 = t64(2, 0), t64(0, 2)
    assert torch.allclose(run("slerp", [v0, v1], t=0.0).tensor, v0)
    assert torch.allclose(run("slerp", [v0, v1], t=1.0).tensor, v1)
    t = 0.3  # orthogonal: angle pi/2, so the closed form is (cos, sin) of t * pi/2
    got = run("slerp", [v0, v1], t=t).tensor
    assert torch.allclose(got, t64(2 * math.cos(t * math.pi / 2), 2 * math.sin(t * math.pi / 2)))
    # base_index says which input t=0 gives
    assert torch.allclose(run("slerp", [v0, v1], base_index=1, t=0.0).tensor, v1)
    # collinear vectors fall back to linear interpolation
    assert torch.allclose(run("slerp", [v0, 3 * v0], t=0.25).tensor, t64(3, 0))
    # a matrix is one flattened vector (not slerped row by row), computed in float32
    m0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).bfloat16()
    m1 = torch.tensor([[0.0, 0.0], [0.0, 1.0]]).bfloat16()
    got = run("slerp", [m0, m1], t=0.5).tensor
    c = math.cos(math.pi / 4)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, torch.tensor([[c, 0.0], [0.0, c]]).bfloat16())


def test_passthrough_copies_or_scales():
    x = t64(1, -2)
    assert run("passthrough", [x], None, [{"scale": None}]).tensor is x
    assert torch.equal(run("passthrough", [x], None, [{"scale": 0.5}]).tensor, t64(0.5, -1))


def test_task_arithmetic_weighted_sum_normalize_lambda():
    base, m1, m2 = t64(1, 1), t64(2, 0), t64(1, 3)  # deltas (1, -1) and (0, 2)
    pm = [{}, {"weight": 0.5}, {"weight": 1.5}]
    r = run("task_arithmetic", [base, m1, m2], 0, pm)
    assert torch.allclose(r.tensor, t64(1 + 0.5, 1 - 0.5 + 3))
    r = run("task_arithmetic", [base, m1, m2], 0, pm, normalize=True, **{"lambda": 2.0})
    assert torch.allclose(r.tensor, t64(1 + 2 * 0.5 / 2, 1 + 2 * 2.5 / 2))
    # the base may sit anywhere in the input list
    r = run("task_arithmetic", [m1, base, m2], 1, [{"weight": 0.5}, {}, {"weight": 1.5}])
    assert torch.allclose(r.tensor, t64(1.5, 3.5))


def test_ties_sign_election_disjoint_mean_and_stats():
    base = t64(0, 0, 0, 0)
    m1, m2, m3 = t64(1, -2, 3, 0.5), t64(-3, 1, 1, 0.25), t64(1, -1, -2, 1)
    pm = [{}] + [{"weight": 1.0}] * 3
    r = run("ties", [base, m1, m2, m3], 0, pm)
    # summed deltas (-1, -2, 2, 1.75) elect signs (-, -, +, +); the mean over agreeing models:
    # e0: -3 alone; e1: (-2 - 1) / 2; e2: (3 + 1) / 2; e3: all three agree
    assert torch.allclose(r.tensor, t64(-3, -1.5, 2, 1.75 / 3))
    assert r.sign_conflict == pytest.approx(3 / 4)  # e3 is the only element without conflict
    assert r.kept_fraction == pytest.approx(8 / 12)  # kept: 1 + 2 + 2 + 3 of 12 non-zero


def test_ties_with_density_and_weights():
    base = t64(1, 1, 1, 1)
    m1 = base + t64(0.5, -0.1, 0.2, -0.4)  # top 2 by magnitude: 0.5, -0.4
    m2 = base + t64(-0.3, 0.05, 0.25, 0.01)  # top 2: -0.3, 0.25
    pm = [{}, {"weight": 1.0, "density": 0.5}, {"weight": 2.0, "density": 0.5}]
    r = run("ties", [base, m1, m2], 0, pm)
    # weighted: (0.5, 0, 0, -0.4) and (-0.6, 0, 0.5, 0); sums (-0.1, 0, 0.5, -0.4)
    # e0 elects -, only model 2: -0.6 / 2; e1: nothing; e2: 0.5 / 2; e3: -0.4 / 1
    assert torch.allclose(r.tensor, base + t64(-0.3, 0, 0.25, -0.4))
    assert r.sign_conflict == pytest.approx(1 / 4)
    assert r.kept_fraction == pytest.approx(3 / 8)
    r = run("ties", [base, m1, m2], 0, pm, normalize=False)
    assert torch.allclose(r.tensor, base + t64(-0.6, 0, 0.5, -0.4))


def test_dare_density_one_is_task_arithmetic_and_ties():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(50, generator=g, dtype=F64) for _ in range(3)]
    pm = [{}, {"weight": 0.7, "density": 1.0}, {"weight": 0.4, "density": 1.0}]
    ta = run("task_arithmetic", ts, 0, pm).tensor
    assert torch.equal(run("dare_linear", ts, 0, pm, seed=1).tensor, ta)
    ties = run("ties", ts, 0, pm, normalize=False).tensor
    assert torch.equal(run("dare_ties", ts, 0, pm, seed=1).tensor, ties)
    assert not torch.equal(ta, ties)


def test_dare_is_reproducible_per_seed_and_rescales():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(4000, generator=g) for _ in range(3)]
    pm = [{}, {"weight": 1.0, "density": 0.3}, {"weight": 1.0, "density": 0.3}]
    a = run("dare_ties", ts, 0, pm, seed=7)
    assert torch.equal(a.tensor, run("dare_ties", ts, 0, pm, seed=7).tensor)
    assert not torch.equal(a.tensor, run("dare_ties", ts, 0, pm, seed=8).tensor)
    assert 0.1 < a.kept_fraction < 0.3  # ~30% survive dropping, about 2/3 of those the vote
    delta = ts[1] - ts[0]
    kept = sp.bernoulli(delta, 0.3, rescale=True, generator=torch.Generator().manual_seed(3))
    assert (kept != 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert kept.abs().sum().item() == pytest.approx(delta.abs().sum().item(), rel=1e-5)
    nz = kept != 0
    factor = delta.abs().sum() / delta[nz].abs().sum()  # L1 of all over L1 of the kept
    assert torch.allclose(kept[nz], delta[nz] * factor)


def test_magnitude_keeps_largest_and_rescales():
    x = t64(0.1, -0.5, 0.3, -0.2, 0.4)
    assert torch.equal(sp.magnitude(x, 0.4), t64(0, -0.5, 0, 0, 0.4))
    assert torch.equal(sp.magnitude(x, 0.01), t64(0, -0.5, 0, 0, 0))  # at least one kept
    assert torch.equal(sp.magnitude(x, 0.0), torch.zeros(5, dtype=F64))
    scaled = sp.magnitude(x, 0.4, rescale=True)
    assert torch.allclose(scaled, t64(0, -0.5, 0, 0, 0.4) * (1.5 / 0.9))


def test_breadcrumbs_drops_top_gamma_outlier_and_smallest():
    x = torch.arange(1, 101, dtype=F64) * torch.tensor([1.0, -1.0]).repeat(50)
    kept = sp.magnitude_outliers(x, 0.9, gamma=0.01)
    # 90 kept, 1 outlier dropped, so the 9 smallest go too: |x| in 10..99 survive
    assert torch.equal(kept != 0, (x.abs() >= 10) & (x.abs() <= 99))
    # no room for the outlier cut beyond density: only the largest is dropped
    assert torch.equal(sp.magnitude_outliers(x, 0.99, gamma=0.01) != 0, x.abs() <= 99)
    base = torch.zeros(100, dtype=F64)
    r = run("breadcrumbs", [base, x], 0, [{}, {"weight": 1.0, "density": 0.9, "gamma": 0.01}])
    assert torch.equal(r.tensor, kept) and r.kept_fraction == pytest.approx(0.9)
    r = run("breadcrumbs_ties", [base, x, -x], 0, [{}] + [{"weight": 1.0, "density": 0.9}] * 2)
    assert r.sign_conflict == pytest.approx(0.9)  # every kept element has both signs


def test_della_probabilities_and_epsilon_check():
    x = torch.tensor([[0.1, -0.4, 0.3, 0.2], [5.0, 1.0, -3.0, 2.0]])
    p = sp.della_probabilities(x, density=0.5, epsilon=0.1)
    # per row, rank r of |x| (0 = smallest) gives 0.4 + 0.2 * r / 3
    expect = 0.4 + 0.2 * torch.tensor([[0, 3, 2, 1], [3, 0, 2, 1]]) / 3
    assert torch.allclose(p, expect)
    assert torch.allclose(sp.della_probabilities(x[0], 0.5, 0.1), expect[0])  # 1-D: one row
    with pytest.raises(InputError, match="epsilon"):
        sp.della_magprune(x, 0.9, 0.15)
    g = torch.Generator().manual_seed(0)
    big = torch.randn(2, 20000, generator=g)
    kept = sp.della_magprune(big, 0.5, 0.4, generator=torch.Generator().manual_seed(1)) != 0
    small, large = big.abs() < 0.3, big.abs() > 2.0  # low and high ranks: p ~0.1+ / ~0.9-
    assert kept[small].float().mean() < 0.3 and kept[large].float().mean() > 0.7
    r = run("della", [torch.zeros(2, 20000), big, big], 0,
            [{}] + [{"weight": 1.0, "density": 0.5, "epsilon": 0.4}] * 2, seed=3)
    assert r.sign_conflict < 0.5 and 0.3 < r.kept_fraction < 0.7


def _tie_heavy(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, generator=g) * 0.01).bfloat16()
    x[torch.rand(n, generator=g) < 0.2] = 0
    return x


@pytest.mark.parametrize("n", [9, 1000, 200_000])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("data", ["normal", "constant"])
def test_selection_equals_torch_sort_on_tie_heavy_data(n, dtype, data, monkeypatch):
    # bf16-valued normal data with 20% zeros, or one magnitude everywhere (both cuts in one tie)
    x = _tie_heavy(n, n) if data == "normal" else torch.tensor([0.5, -0.5]).repeat(n)[:n]
    x = x.to(dtype)
    w, nonzero = x.abs().float(), x != 0  # zeros stay zero, so their mask bit is free

    def masks(got, chosen):  # ours and the sort's, non-zero elements only
        want = torch.zeros(n, dtype=torch.bool)
        want[chosen] = True
        return got & nonzero, want & nonzero

    def same(got, chosen):
        return torch.equal(*masks(got, chosen))

    def same_magnitudes(got, chosen):  # the same multiset of kept magnitudes
        a, b = masks(got, chosen)
        return torch.equal(torch.sort(w[a]).values, torch.sort(w[b]).values)

    for density in (0.05, 0.5, 0.9):
        k = max(1, int(density * n))
        keep, skip = int(density * n), max(0, n - int(density * n) - int(0.02 * n))
        # mergekit's magnitude() and magnitude_outliers() picks, ties included
        assert same(sp.keep_largest(x, k), torch.argsort(w, descending=True)[:k])
        assert same(sp.keep_band(x, skip, skip + keep), torch.sort(w).indices[skip:skip + keep])
        # O(n) "spread" mode: the same magnitudes, ties chosen otherwise
        monkeypatch.setattr(sp, "TIE_ORDER", "spread")
        assert same_magnitudes(sp.keep_largest(x, k), torch.argsort(w, descending=True)[:k])
        assert same_magnitudes(sp.keep_band(x, skip, skip + keep),
                               torch.sort(w).indices[skip:skip + keep])
        monkeypatch.setattr(sp, "TIE_ORDER", "torch")


def test_spread_mode_spaces_kept_ties_evenly(monkeypatch):
    monkeypatch.setattr(sp, "TIE_ORDER", "spread")
    x = torch.tensor([1.0, -1.0] * 5)  # ten equal magnitudes
    assert torch.nonzero(sp.keep_largest(x, 5)).squeeze(1).tolist() == [0, 2, 4, 6, 8]
    y = torch.tensor([3.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0])  # four largest: 3, 2 and two 1s
    assert torch.nonzero(sp.keep_largest(y, 4)).squeeze(1).tolist() == [0, 1, 3, 4]


@pytest.mark.parametrize("name", sorted(registry()))
def test_every_method_handles_odd_shapes_and_keeps_dtype(name):
    m = get_method(name)
    count = min(3, m.max_models or 3)
    for shape in [(), (1,), (5,), (3, 4, 2)]:
        g = torch.Generator().manual_seed(1)
        ts = [torch.randn(shape, generator=g).bfloat16() for _ in range(count)]
        pm = [{"weight": 0.5, "density": 0.5, "epsilon": 0.1, "scale": None}] * count
        base_index = 0 if m.base != "none" else None
        out = run(name, ts, base_index, pm, seed=0, t=0.4).tensor
        assert out.shape == ts[0].shape and out.dtype == torch.bfloat16
        assert torch.isfinite(out.float()).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_methods_run_on_cuda_like_on_cpu(monkeypatch):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(300, 70, generator=g)
    ts = [base.bfloat16()] + [(base + torch.randn(300, 70, generator=g) * 0.01).bfloat16()
                              for _ in range(2)]
    cuda = [t.cuda() for t in ts]
    pm = [{"weight": 0.6, "density": 0.4, "epsilon": 0.1, "gamma": 0.02}] * 3
    for name in sorted(registry()):
        m = get_method(name)
        n = min(3, m.max_models or 3)
        base_index = 0 if m.base != "none" else None
        gen = torch.Generator("cuda").manual_seed(0) if m.random else None
        params = {p.name: p.default for p in m.global_params} | {"t": 0.3}
        out = m.fn(cuda[:n], base_index, params, pm[:n], gen).tensor
        assert out.is_cuda and out.dtype == torch.bfloat16 and out.shape == ts[0].shape
        if not m.random:
            # "torch" tie order follows each device's own sort; "spread" is the same everywhere
            monkeypatch.setattr(sp, "TIE_ORDER", "spread")
            out = m.fn(cuda[:n], base_index, params, pm[:n], None).tensor.cpu()
            ref = run(name, ts[:n], base_index, pm[:n], t=0.3).tensor
            monkeypatch.setattr(sp, "TIE_ORDER", "torch")
            assert torch.allclose(out.float(), ref.float(), rtol=2 ** -7, atol=1e-6), name
    w = _tie_heavy(100_000, 5).float().abs()
    for rank in (0, 500, 50_000, 99_999):
        cpu, gpu = sp._at_ranks(w, rank)[0], sp._at_ranks(w.cuda(), rank)[0]
        assert (cpu[0].item(), cpu[1], cpu[2]) == (gpu[0].item(), gpu[1], gpu[2])
