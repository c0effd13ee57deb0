"""Fisher-weighted averaging: the layer-streamed Fisher, the merge math, the merge end to end, the cache."""

from __future__ import annotations

import json
import random

import pytest
import torch
from helpers import drain

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled
from fusion_gui.engine.methods.fisher_prepare import FisherStore, cache_root, stream_fisher
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.methods import get_method
from fusion_gui.engine.synthetic_models import build_model, perturb, save_model, tiny_config
from fusion_gui.events import Log, StepProgress

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_GUI_CACHE", str(tmp_path / "cache"))


def reference_fisher(path, blocks):
    """The definition, on the whole model: mean over blocks of the squared loss gradient."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    fisher = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for s in range(len(blocks)):
        model.zero_grad()
        model(input_ids=blocks[s:s + 1], labels=blocks[s:s + 1]).loss.backward()
        for name, p in model.named_parameters():
            fisher[name] += p.grad.square()
    return {name: f / len(blocks) for name, f in fisher.items()}


CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                        reason="needs a CUDA GPU")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # GPT-2 ties its input and output embeddings
def test_layer_streamed_fisher_equals_the_whole_model_reference(arch, device, tmp_path):
    path = save_model(perturb(build_model(tiny_config(arch, layers=3, hidden=32), seed=0), seed=7), tmp_path / arch)
    blocks = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    streamed = {}
    with open_model(str(path)) as reader:
        squares, events = drain(stream_fisher(reader, blocks, lambda n, f: streamed.__setitem__(n, f.cpu()),
                                              tmp_path / "work", device))
    assert [e.done for e in events] == list(range(1, 2 * 3 + 4)) and all(e.total == 9 for e in events)
    assert not list((tmp_path / "work").iterdir())  # the saved layer inputs are gone
    reference = reference_fisher(path, blocks)
    assert set(streamed) == set(reference)
    for name, expected in reference.items():
        assert expected.abs().max() > 0, name
        # the CPU reference against GPU kernels: float32 rounding differs, so a looser bound there
        rtol = 1e-4 if device == "cpu" else 1e-3
        assert torch.allclose(streamed[name], expected, rtol=rtol, atol=rtol * 1e-2 * float(expected.abs().max())), name
    norm = sum(float(f.double().square().sum()) for f in reference.values())
    assert squares == pytest.approx(norm, rel=rtol)


# --- the merge math --------------------------------------------------------------------------------

def merge(thetas, fishers, weights=None, norms=None, **params):
    method = get_method("fisher")
    full = {p.name: p.default for p in method.global_params} | params
    weights = weights or [1.0] * len(thetas)
    per_model = [{"weight": w, "fisher_norm": (norms or [1.0] * len(thetas))[i]} for i, w in enumerate(weights)]
    return method.fn(list(thetas) + list(fishers), None, full, per_model, None).tensor


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_an_element_only_one_model_has_fisher_for_takes_that_models_value():
    a, b = t(1.0, 1.0, 1.0), t(5.0, 5.0, 5.0)
    merged = merge([a, b], [t(2.0, 0.0, 0.0), t(0.0, 3.0, 0.0)], normalize=False)
    # b has no Fisher on element 0: a wins; a has none on element 1: b wins but for a's floor;
    # neither has any on element 2: only the first model is floored (the paper's default), so a wins.
    assert merged[0] == 1.0 and merged[1] == pytest.approx((1e-6 * 1 + 3 * 5) / (1e-6 + 3)) and merged[2] == 1.0
    both = merge([a, b], [t(0.0), t(0.0)], normalize=False, favor_target=False)
    assert both.tolist() == pytest.approx([3.0] * 3)  # every model floored: a plain average


def test_equal_fishers_give_the_weighted_average_and_the_floor_bounds_small_ones():
    a, b = t(1.0, -2.0), t(3.0, 6.0)
    merged = merge([a, b], [t(0.5, 7.0), t(0.5, 7.0)], weights=[1.0, 3.0], normalize=False)
    assert merged.tolist() == pytest.approx(((a + 3 * b) / 4).tolist())
    floored = merge([a, b], [t(1e-9, 1e-9), t(1e-9, 1e-9)], normalize=False, favor_target=False, fisher_floor=1e-3)
    assert floored.tolist() == pytest.approx(((a + b) / 2).tolist())


def test_normalize_divides_each_weight_by_the_norm_of_its_models_whole_fisher():
    a, b, fa = t(0.0, 0.0), t(1.0, 1.0), t(1.0, 2.0)
    assert merge([a, b], [fa, 10 * fa], normalize=False).tolist() == pytest.approx([10 / 11] * 2)
    assert merge([a, b], [fa, 10 * fa], norms=[1.0, 10.0]).tolist() == pytest.approx([0.5, 0.5])


def test_without_fishers_it_is_the_weighted_average_and_keeps_the_dtype():
    a, b = torch.tensor([1.0, 2.0]).bfloat16(), torch.tensor([3.0, 4.0]).bfloat16()
    method = get_method("fisher")
    params = {p.name: p.default for p in method.global_params}
    out = method.fn([a, b], None, params, [{"weight": 1.0}, {"weight": 3.0}], None).tensor
    assert out.dtype == torch.bfloat16 and out.float().tolist() == [2.5, 3.5]


# --- merges through the command line ---------------------------------------------------------------

def calibration_text(path, lines=60):
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(lines)) + "\n")
    return path


def recipe(tmp_path, models, calibration, **params):
    params = {"calibration": str(calibration), "samples": 4, "seq_length": 32} | params
    lines = ["merge_method: fisher", f"parameters: {json.dumps(params)}", "models:"]
    for model, weight in models:
        lines += [f"  - model: {model}", f"    parameters: {{weight: {weight}}}"]
    path = tmp_path / "fisher.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_merge_estimates_caches_and_reuses_the_fishers(run_cli, llama_family, tmp_path):
    import transformers

    _, ft1, ft2 = llama_family
    config = recipe(tmp_path, [(ft1, 1.0), (ft2, 0.5)], calibration_text(tmp_path / "calib.txt"))
    code, out, err = run_cli("merge", config, tmp_path / "dry", "--dry-run")
    assert code == 0 and "note: fisher:" in out and "0 of 2 already cached" in out, out

    code, out, err = run_cli("merge", config, tmp_path / "out1")
    assert code == 0, err
    assert err.count("Estimating the Fisher of") == 2 and "Using the cached" not in err
    folders = sorted(p for p in cache_root().iterdir())
    assert len(folders) == 2 and not any(p.name.startswith(".tmp") for p in folders)
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out1")
    assert merged.config.num_hidden_layers == 4

    # the output is the formula applied to the cached Fishers
    name = "model.layers.1.mlp.down_proj.weight"
    with open_model(str(ft1)) as r1, open_model(str(ft2)) as r2, open_model(str(tmp_path / "out1")) as out_reader:
        stores = [FisherStore(folder, reader) for folder, reader in zip(_folders_for(folders, [r1, r2]), [r1, r2])]
        thetas, fishers = [r1.get(name), r2.get(name)], [s.get(name) for s in stores]
        assert all(f.abs().max() > 0 for f in fishers)
        expected = merge(thetas, fishers, weights=[1.0, 0.5], norms=[s.norm for s in stores])
        assert torch.allclose(out_reader.get(name), expected, atol=1e-6)
        for store in stores:
            store.close()
    mtimes = [p.stat().st_mtime_ns for p in folders]

    code, _, err = run_cli("merge", config, tmp_path / "out2")
    assert code == 0, err
    assert err.count("Using the cached Fisher of") == 2 and "Estimating" not in err
    assert [p.stat().st_mtime_ns for p in folders] == mtimes
    code, out, _ = run_cli("merge", config, tmp_path / "dry", "--dry-run")
    assert "2 of 2 already cached" in out


def _folders_for(folders, readers):
    """Each reader's cache folder, matched through the model path fisher.json records."""
    by_model = {json.loads((f / "fisher.json").read_text())["model"]: f for f in folders}
    return [by_model[str(r.path)] for r in readers]


def test_a_short_calibration_text_uses_the_blocks_it_has_and_warns(run_cli, gpt2_family, tmp_path):
    _, ft1, ft2 = gpt2_family
    config = recipe(tmp_path, [(ft1, 1.0), (ft2, 1.0)], calibration_text(tmp_path / "c.txt", lines=6), samples=50)
    code, _, err = run_cli("merge", config, tmp_path / "out")
    assert code == 0, err
    assert "makes only" in err and "instead of 50" in err


def test_cancelling_during_estimation_leaves_no_cache_and_no_output(llama_family, tmp_path):
    from fusion_gui.engine.merge import merge as run_merge
    from fusion_gui.engine.merge.recipe import load_recipe

    _, ft1, ft2 = llama_family
    config = recipe(tmp_path, [(ft1, 1.0), (ft2, 1.0)], calibration_text(tmp_path / "calib.txt"))
    token = CancelToken()
    job = run_merge(load_recipe(config), tmp_path / "out", cancel=token)
    with pytest.raises(Cancelled):
        for event in job:
            if isinstance(event, StepProgress) and event.done == 3:
                token.cancel()
    assert not (tmp_path / "out").exists()
    assert not cache_root().exists() or not any(cache_root().iterdir())


def test_bad_inputs_are_one_sentence_and_exit_2(run_cli, llama_family, tmp_path):
    base, ft1, _ = llama_family
    calib = calibration_text(tmp_path / "calib.txt")
    missing = recipe(tmp_path, [(base, 1.0), (ft1, 1.0)], tmp_path / "nowhere.txt")
    code, _, err = run_cli("merge", missing, tmp_path / "out")
    assert code == 2 and "calibration" in err and "nowhere.txt" in err and err.count("\n") == 1, err

    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((base / "model.safetensors").read_bytes() if (base / "model.safetensors").exists()
                     else _one_shard(base))
    code, _, err = run_cli("merge", recipe(tmp_path, [(ft1, 1.0), (bare, 1.0)], calib), tmp_path / "out")
    assert code == 2 and "config.json" in err and err.count("\n") == 1, err

    (tmp_path / "short.txt").write_text("a cat\n")
    code, _, err = run_cli("merge", recipe(tmp_path, [(base, 1.0), (ft1, 1.0)], tmp_path / "short.txt"),
                           tmp_path / "out")
    assert code == 2 and "too short" in err, err

    code, _, err = run_cli("merge", recipe(tmp_path, [(base, 1.0), (ft1, 1.0)], calib, seq_length=4096),
                           tmp_path / "out")
    assert code == 2 and "seq_length 4096" in err, err
    assert not (tmp_path / "out").exists()


def _one_shard(folder):
    """A model whose tensors all sit in one .safetensors file, as bytes (the fixtures are sharded)."""
    from safetensors.torch import save

    with open_model(str(folder)) as reader:
        return save({name: reader.get(name) for name in reader.tensors})


def test_methods_lists_fisher_with_its_paper(run_cli):
    code, out, _ = run_cli("methods")
    assert code == 0
    block = out[out.index("fisher — "):].split("\n\n")[0]
    assert "https://arxiv.org/abs/2111.09832" in block and "- calibration (Path, global, one value for the merge, required)" in block


def test_estimation_events_name_the_model_and_the_layer(llama_family, tmp_path):
    from fusion_gui.engine.merge import merge as run_merge
    from fusion_gui.engine.merge.recipe import load_recipe

    _, ft1, ft2 = llama_family
    config = recipe(tmp_path, [(ft1, 1.0), (ft2, 1.0)], calibration_text(tmp_path / "calib.txt"), samples=2)
    _, events = drain(run_merge(load_recipe(config), tmp_path / "out"))
    stages = [e.stage for e in events if isinstance(e, StepProgress)]
    assert "Fisher of llama-ft1: backward layer 2 of 4" in stages and len(stages) == 2 * (2 * 4 + 3)
    assert any(isinstance(e, Log) and "Estimating the Fisher of 'llama-ft2'" in e.message for e in events)


def test_a_tokenizer_source_that_keeps_the_ids_is_allowed_and_changes_nothing(run_cli, llama_family, tmp_path):
    """mergekit recipes often say `tokenizer_source: base` out of habit: over models of one vocabulary
    the Fisher merge is the same; over different vocabularies it is refused in one sentence."""
    from fixtures.tiny_models import build_vocab_family

    _, ft1, ft2 = llama_family
    calibration = calibration_text(tmp_path / "calib.txt")
    plain = recipe(tmp_path, [(ft1, 1.0), (ft2, 1.0)], calibration)
    assert run_cli("merge", plain, tmp_path / "plain")[0] == 0
    with_source = tmp_path / "with_source.yml"
    with_source.write_text(plain.read_text() + "tokenizer_source: base\n")
    code, _, err = run_cli("merge", with_source, tmp_path / "with_source")
    assert code == 0, err
    with open_model(str(tmp_path / "plain")) as a, open_model(str(tmp_path / "with_source")) as b:
        assert a.tensors.keys() == b.tensors.keys()
        assert all(torch.equal(a.get(n), b.get(n)) for n in a.tensors)

    family = build_vocab_family(tmp_path / "vocab")
    union = tmp_path / "union.yml"
    union.write_text(recipe(tmp_path, [(family["a"], 1.0), (family["b"], 1.0)], calibration).read_text()
                     + "tokenizer_source: union\n")
    code, _, err = run_cli("merge", union, tmp_path / "union")
    assert code == 2 and "cannot merge models with different vocabularies yet" in err
    assert not (tmp_path / "union").exists()
