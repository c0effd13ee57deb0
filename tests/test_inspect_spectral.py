"""Spectral health: the power-law alpha of each weight matrix, checked against weightwatcher's own
number on the same matrices, streamed per tensor, and `fusion-gui inspect --spectral`."""

import json
import math

import numpy as np
import pytest
import torch

from fusion_gui.engine.inspect.spectral import MIN_EVALS, SpectralTensor, eigenvalues, fit_power_law, spectral
from helpers import drain


def _matrices():
    g = torch.Generator().manual_seed(0)
    heavy = torch.randn(120, 160, generator=g) / torch.rand(120, 160, generator=g).sqrt()  # heavy-tailed entries
    low_rank = torch.randn(128, 32, generator=g) @ torch.randn(32, 96, generator=g) + 0.1 * torch.randn(128, 96, generator=g)
    return [torch.randn(100, 150, generator=g), low_rank, heavy]


def test_alpha_matches_weightwatchers_fit():
    pl = pytest.importorskip("weightwatcher.WW_powerlaw")
    for w in _matrices():
        values = eigenvalues(w)
        ours, theirs = fit_power_law(values), pl.WWFit(values[values > 1e-5])
        assert ours.alpha == pytest.approx(theirs.alpha, rel=1e-9)
        assert ours.xmin == pytest.approx(theirs.xmin) and ours.ks_distance == pytest.approx(theirs.D)


def test_alpha_matches_weightwatcher_analyze_on_a_model():
    ww = pytest.importorskip("weightwatcher")
    model = torch.nn.Sequential(*[torch.nn.Linear(w.shape[1], w.shape[0], bias=False) for w in _matrices()])
    with torch.no_grad():
        for layer, w in zip(model, _matrices()):
            layer.weight.copy_(w)
    details = ww.WeightWatcher(model=model).analyze()
    theirs = sorted(float(a) for a in details["alpha"])
    ours = sorted(fit_power_law(eigenvalues(w)).alpha for w in _matrices())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)  # their SVD is float32's


def test_too_few_eigenvalues_give_no_fit():
    assert fit_power_law(np.linspace(1, 2, MIN_EVALS - 1)) is None
    # a pure power law (inverse-CDF samples, alpha 3): recovered
    u = (np.arange(4000) + 0.5) / 4000
    fit = fit_power_law((1 - u) ** (-1 / 2))
    assert fit.alpha == pytest.approx(3.0, rel=0.05)


def test_spectral_streams_each_matrix_of_each_model(llama_family, one_torch_thread):
    base, *fts = [str(p) for p in llama_family]
    result, events = drain(spectral([base, fts[0]]))
    per_tensor = [e for e in events if isinstance(e, SpectralTensor)]
    assert len(per_tensor) == len(result.tensors) and {t.model for t in per_tensor} == set(result.models)
    name = "model.layers.1.mlp.up_proj.weight"
    item = next(t for t in result.tensors if t.name == name and t.model == result.models[0])
    from fusion_gui.engine.io.opener import open_model

    with open_model(base) as r:
        direct = fit_power_law(torch.linalg.svdvals(r.get(name).float()).double().numpy() ** 2)
    assert item.alpha == pytest.approx(direct.alpha) and item.kind == "mlp.up" and item.layer == 1
    layers = result.layer_alphas(result.models[0])
    assert set(layers) == {0, 1, 2, 3} and all(math.isfinite(v) for v in layers.values())


def test_cli_inspect_spectral_json(run_cli, llama_family, one_torch_thread):
    code, out, _ = run_cli("inspect", str(llama_family[0]), "--spectral", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["models"] and data["tensors"][0]["alpha"] is None or data["tensors"][0]["alpha"] > 1
    assert set(data["layers"][data["models"][0]]) == {"0", "1", "2", "3"}
