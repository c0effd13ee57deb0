"""Inspection engine: drill-down of one tensor, similarity of N models, relative-depth matching, and
`fusion-gui inspect`, each number checked against a direct torch computation."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.inspect import pictures, tensor as tensor_mod
from fusion_gui.engine.inspect.depth import depth_match, relative_depth_mapping
from fusion_gui.engine.inspect import similarity as similarity_mod
from fusion_gui.engine.inspect.similarity import pair_sums, similarity
from fusion_gui.engine.inspect.tensor import drill_down
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.methods.sparsify import keep_largest
from fusion_gui.events import Progress
from helpers import drain

W = "model.layers.0.mlp.up_proj.weight"


def save(path, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


@pytest.fixture
def low_rank(tmp_path):
    """A base and two models whose change of W is exactly rank 5 and rank 3, with a bias changed too."""
    tensor_mod.clear_cache()
    g = torch.Generator().manual_seed(0)
    base = {W: torch.randn(96, 80, generator=g), "model.layers.0.mlp.up_proj.bias": torch.randn(96, generator=g)}
    changes = [torch.randn(96, 5, generator=g) @ torch.randn(5, 80, generator=g),
               torch.randn(96, 3, generator=g) @ torch.randn(3, 80, generator=g)]
    paths = [save(tmp_path / "base.safetensors", base)]
    for i, c in enumerate(changes):
        paths.append(save(tmp_path / f"ft{i}.safetensors",
                          {W: base[W] + c, "model.layers.0.mlp.up_proj.bias": base["model.layers.0.mlp.up_proj.bias"]}))
    # the changes as stored (float32 rounding of base + c), still of rank 5 and 3 up to rounding
    return paths, base, [(base[W] + c) - base[W] for c in changes]


def test_drill_down_ranks_spectrum_and_pictures_match_torch(low_rank):
    paths, base, changes = low_rank
    result, events = drain(drill_down(W, paths[1:], paths[0], density=0.3, bins=16, image_size=32))
    assert any(isinstance(e, Progress) for e in events)
    assert result.svd == "exact" and result.block == (3, 3) and not result.cached
    for c, change in zip(result.changes, changes):
        direct = torch.linalg.svdvals(change).double().numpy()
        np.testing.assert_allclose(c.spectrum, direct, rtol=1e-4, atol=1e-3)
        p = direct / direct.sum()
        assert c.effective_rank == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-3)
        assert c.relative_change == pytest.approx(float(change.norm() / base[W].norm()), rel=1e-5)
        np.testing.assert_array_equal(c.counts, np.histogram(change.numpy(), bins=result.bin_edges)[0])
        assert c.image.shape == (32, 27)  # 96 / 3 rows, ceil(80 / 3) columns
        energy = float(change.double().square().sum())
        assert float((c.image.astype(np.float64) ** 2).sum()) == pytest.approx(energy, rel=1e-5)
        rows = change.double().square().reshape(32, 3, 80).sum((1, 2)).sqrt().numpy()
        np.testing.assert_allclose(c.row_norms, rows, rtol=1e-5)
    assert result.changes[0].rank_99 == 5 and result.changes[1].rank_99 == 3
    assert result.changes[0].rank_90 <= 5


def test_randomized_spectrum_recovers_low_rank_and_says_so(low_rank, monkeypatch):
    paths, _, changes = low_rank
    monkeypatch.setattr(pictures, "EXACT_SVD_MAX", 16)
    monkeypatch.setattr(pictures, "SVD_RANK", 12)
    result, _ = drain(drill_down(W, paths[1:2], paths[0]))
    assert result.svd.startswith("randomized")
    c = result.changes[0]
    assert len(c.spectrum) == 12 and c.rank_99 == 5
    # one model: TIES keeps its trim (half the elements at the default density, none of them zero)
    trim = (changes[0] != 0) & keep_largest(changes[0], 96 * 40)
    assert c.kept["ties"] == pytest.approx(float(trim.float().mean()))
    np.testing.assert_allclose(c.spectrum[:5], torch.linalg.svdvals(changes[0]).numpy()[:5], rtol=1e-3)


def test_sign_agreement_and_ties_keep_by_hand(tmp_path):
    tensor_mod.clear_cache()
    base = torch.zeros(2, 4)
    a = torch.tensor([[1.0, -2.0, 3.0, 0.0], [0.5, 1.0, -1.0, 4.0]])
    b = torch.tensor([[2.0, 1.0, 0.0, 0.0], [-3.0, 1.0, -1.0, 0.1]])
    paths = [save(tmp_path / n, {W: t})
             for n, t in (("b.safetensors", base), ("a.safetensors", a), ("c.safetensors", b))]
    result, _ = drain(drill_down(W, paths[1:], paths[0], density=0.5))
    # opposite non-zero signs at (0,1) and (1,0): 2 of 8 elements
    assert result.sign_agreement == pytest.approx(6 / 8)
    trimmed = [x * keep_largest(x, 4) for x in (a, b)]
    elected = sum(trimmed).sign()
    for c, t in zip(result.changes, trimmed):
        kept = ((t.sign() == elected) & (t != 0)).float().mean()
        assert c.kept["ties"] == pytest.approx(float(kept))
        assert c.kept["breadcrumbs"] == pytest.approx(0.5)


def test_drill_down_is_cached_until_a_file_changes(low_rank):
    paths, base, changes = low_rank
    first, _ = drain(drill_down(W, paths[1:], paths[0]))
    again, events = drain(drill_down(W, paths[1:], paths[0]))
    assert again.cached and not events
    np.testing.assert_array_equal(again.changes[0].spectrum, first.changes[0].spectrum)
    other, _ = drain(drill_down(W, paths[1:], paths[0], density=0.2))  # other settings: computed
    assert not other.cached
    bias = "model.layers.0.mlp.up_proj.bias"
    save(paths[1], {W: base[W] + 2 * changes[0], bias: base[bias]})
    os.utime(paths[1], ns=(1, 1))  # a different modification time even within the clock's resolution
    rewritten, _ = drain(drill_down(W, paths[1:], paths[0]))
    assert not rewritten.cached
    assert rewritten.changes[0].relative_change == pytest.approx(2 * first.changes[0].relative_change, rel=1e-5)


def test_unknown_tensor_names_close_matches(low_rank):
    paths, _, _ = low_rank
    with pytest.raises(InputError, match="Did you mean 'model.layers.0.mlp.up_proj.weight'"):
        drain(drill_down("model.layers.0.mlp.up_proj.weigth", paths[1:], paths[0]))


def _changes_of(paths, names):
    readers = [open_model(p) for p in paths]
    flat = [torch.cat([(r.get(n).double() - readers[0].get(n).double()).reshape(-1) for n in names])
            for r in readers[1:]]
    for r in readers:
        r.close()
    return flat


def test_similarity_matches_direct_cosine_and_sign_conflicts(llama_family, one_torch_thread):
    base, *fts = [str(p) for p in llama_family]
    result, _ = drain(similarity(fts + [fts[0]], base))  # a model twice: cosine 1, no conflicts
    with open_model(base) as r:
        names = [n for n in r.tensors if r.tensors[n].dtype.is_floating_point]
    x, y = _changes_of([base] + fts, names)
    cos = float(x @ y / (x.norm() * y.norm()))
    assert result.whole.cosine[0, 1] == pytest.approx(cos, rel=1e-6)
    assert result.whole.cosine[0, 2] == pytest.approx(1.0)
    both = (x != 0) & (y != 0)
    conflict = float(((x.sign() != y.sign()) & both).sum() / both.sum())
    assert result.whole.sign_conflict[0, 1] == pytest.approx(conflict)
    assert result.whole.sign_conflict[0, 2] == 0
    layer1 = next(g for g in result.groups if g.group == "layer 1")
    lx, ly = _changes_of([base] + fts, [n for n in names if ".layers.1." in n])
    assert layer1.cosine[0, 1] == pytest.approx(float(lx @ ly / (lx.norm() * ly.norm())), rel=1e-6)
    # the duplicated model clusters with its copy
    assert result.linkage is not None and abs(result.order.index(0) - result.order.index(2)) == 1


def _pair_sums_float64(changes):
    """The reference: every product in float64."""
    pos, neg = (changes > 0).double(), (changes < 0).double()
    opposite = pos @ neg.T
    c, nonzero = changes.double(), pos + neg
    return (c @ c.T).numpy(), (opposite + opposite.T).numpy(), (nonzero @ nonzero.T).numpy()


@pytest.mark.parametrize("exact_count", [1 << 24, 7])  # 7: rows counted in slices, the last one short
def test_pair_sums_float32_counts_equal_the_float64_ones(exact_count, monkeypatch):
    monkeypatch.setattr(similarity_mod, "EXACT_COUNT", exact_count)
    g = torch.Generator().manual_seed(3)
    changes = torch.randn(5, 4099, generator=g)
    changes[torch.rand(5, 4099, generator=g) < 0.3] = 0  # unchanged elements count in neither sum
    changes[4] = 0  # a model identical to the base
    for got, want in zip(pair_sums(changes), _pair_sums_float64(changes)):
        assert got.dtype == np.float64 and np.array_equal(got, want)


def test_relative_depth_mapping_and_match(llama_family, tmp_path, one_torch_thread):
    from fusion_gui.engine.synthetic_models import build_family

    assert relative_depth_mapping(4, 2) == (0, 0, 1, 1)
    assert relative_depth_mapping(2, 4) == (0, 3)
    assert relative_depth_mapping(3, 5) == (0, 2, 4)
    [shallow] = build_family(tmp_path, "llama", n_finetunes=0, layers=2)
    result, _ = drain(depth_match(str(llama_family[0]), str(shallow)))
    assert (result.layers_a, result.layers_b, result.mapping) == (4, 2, (0, 0, 1, 1))
    with open_model(str(llama_family[0])) as ra, open_model(str(shallow)) as rb:
        names = [n for n in ra.tensors if ".layers.3." in n]
        x = torch.cat([ra.get(n).double().reshape(-1) for n in names])
        y = torch.cat([rb.get(n.replace(".layers.3.", ".layers.1.")).double().reshape(-1) for n in names])
    assert result.cosine[3] == pytest.approx(float(x @ y / (x.norm() * y.norm())), rel=1e-6)
    assert result.relative_diff[3] == pytest.approx(float((y - x).norm() / x.norm()), rel=1e-6)


def test_cli_inspect_json(run_cli, llama_family, low_rank, tmp_path, one_torch_thread):
    paths, _, changes = low_rank
    code, out, _ = run_cli("inspect", *paths, "--tensor", W, "--json", "--density", "0.25")
    assert code == 0
    data = json.loads(out)
    assert data["density"] == 0.25 and [m["rank_99"] for m in data["models"]] == [5, 3]
    assert sum(data["models"][0]["histogram"]) == changes[0].numel()
    code, out, _ = run_cli("inspect", *[str(p) for p in llama_family], "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["whole"]["cosine"]) == 2 and data["whole"]["cosine"][0][0] == pytest.approx(1.0)
    code, out, _ = run_cli("inspect", *[str(p) for p in llama_family])
    assert code == 0 and "Sign conflicts" in out
    code, _, err = run_cli("inspect", *paths, "--tensor", "model.layers.0.mlp.up_proj.wieght")
    assert code == 2 and "up_proj.weight" in err
