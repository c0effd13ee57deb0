"""End to end: fixture models through `fusion-gui merge`, loaded back with transformers."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fusion_gui.engine.io.opener import open_model


def write_recipe(tmp_path: Path, data: dict, name: str = "recipe.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def load_state(folder) -> dict[str, torch.Tensor]:
    with open_model(str(folder)) as reader:
        return {name: reader.get(name) for name in reader.tensors}


def test_linear_merge_loads_in_transformers_and_is_the_weighted_mean(llama_family, tmp_path, run_cli):
    from transformers import AutoModelForCausalLM

    base, a, b = llama_family
    recipe = write_recipe(tmp_path, {"merge_method": "linear", "models": [
        {"model": str(a), "parameters": {"weight": 0.25}}, {"model": str(b), "parameters": {"weight": 0.75}}]})
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("merge", recipe, out, "--out-shard-size", "300KB", "--no-progress")
    assert code == 0, stderr
    sa, sb, merged = load_state(a), load_state(b), load_state(out)
    assert merged.keys() == sa.keys()
    for name, tensor in merged.items():
        expected = (sa[name] * 0.25 + sb[name] * 0.75) / 1.0
        torch.testing.assert_close(tensor, expected, rtol=1e-6, atol=1e-6)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded as asked
    model = AutoModelForCausalLM.from_pretrained(out)
    logits = model(torch.tensor([[1, 5, 9, 12]])).logits
    assert torch.isfinite(logits).all()
    assert (out / "tokenizer.json").exists() and (out / "generation_config.json").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_ties_on_gpt2_writes_card_recipe_and_config(gpt2_family, tmp_path, run_cli):
    from transformers import AutoModelForCausalLM

    base, a, b = gpt2_family
    recipe = write_recipe(tmp_path, {"merge_method": "ties", "base_model": str(base), "dtype": "bfloat16",
                                     "models": [{"model": str(a), "parameters": {"weight": 0.5, "density": 0.5}},
                                                {"model": str(b), "parameters": {"weight": 0.5, "density": 0.5}}]})
    out = tmp_path / "ties"
    code, _, stderr = run_cli("merge", recipe, out, "--no-progress")
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and "ties" in front["tags"]
    assert "base_model" not in front  # local folders: the Hub could not resolve them
    assert "merge_method: ties" in card
    again = yaml.safe_load((out / "mergekit_config.yml").read_text())
    assert again["merge_method"] == "ties" and again["base_model"] == str(base)
    merged = load_state(out)
    assert all(t.dtype == torch.bfloat16 for t in merged.values() if t.is_floating_point())
    model = AutoModelForCausalLM.from_pretrained(out)
    assert torch.isfinite(model(torch.tensor([[3, 4, 5]])).logits.float()).all()


def test_passthrough_slices_stack_layers_and_update_config(llama_family, tmp_path, run_cli):
    from transformers import AutoModelForCausalLM

    base, a, _ = llama_family
    recipe = write_recipe(tmp_path, {"merge_method": "passthrough", "slices": [
        {"sources": [{"model": str(base), "layer_range": [0, 3]}]},
        {"sources": [{"model": str(a), "layer_range": [1, 4]}]}]})
    out = tmp_path / "frank"
    code, _, stderr = run_cli("merge", recipe, out, "--no-progress")
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 6
    merged, sb, sa = load_state(out), load_state(base), load_state(a)
    name = "model.layers.{}.mlp.down_proj.weight"
    torch.testing.assert_close(merged[name.format(2)], sb[name.format(2)])
    torch.testing.assert_close(merged[name.format(3)], sa[name.format(1)])
    torch.testing.assert_close(merged[name.format(5)], sa[name.format(3)])
    model = AutoModelForCausalLM.from_pretrained(out)
    assert len(model.model.layers) == 6


def test_random_methods_are_seeded(llama_family, tmp_path, run_cli):
    base, a, b = llama_family
    data = {"merge_method": "dare_ties", "base_model": str(base), "random_seed": 3, "models": [
        {"model": str(m), "parameters": {"weight": 0.5, "density": 0.5}} for m in (a, b)]}
    recipe = write_recipe(tmp_path, data)
    runs = {}
    for out, extra in (("r1", []), ("r2", []), ("r3", ["--seed", "4"])):
        code, _, stderr = run_cli("merge", recipe, tmp_path / out, "--no-progress", *extra)
        assert code == 0, stderr
        runs[out] = load_state(tmp_path / out)
    name = "model.layers.1.mlp.up_proj.weight"
    assert torch.equal(runs["r1"][name], runs["r2"][name])
    assert not torch.equal(runs["r1"][name], runs["r3"][name])


def test_dry_run_writes_nothing_and_reports(llama_family, tmp_path, run_cli):
    base, a, b = llama_family
    recipe = write_recipe(tmp_path, {"merge_method": "task_arithmetic", "base_model": str(base), "models": [
        {"model": str(a), "parameters": {"weight": 1.0}}, {"model": str(b), "parameters": {"weight": 0.5}}]})
    code, stdout, stderr = run_cli("merge", recipe, tmp_path / "dry", "--dry-run", "--out-shard-size", "100KB")
    assert code == 0, stderr
    assert not (tmp_path / "dry").exists()
    assert "est. peak memory" in stdout and "shard" in stdout
    n_tensors = len(open_model(str(base)).tensors)
    assert f"tensors:         {n_tensors}" in stdout


def test_merge_events_carry_tensor_and_layer_metrics(llama_family, tmp_path):
    from fusion_gui.engine.merge import merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.events import LayerMetrics, PlanSummary, Progress, TensorMetrics

    base, a, b = llama_family
    recipe = recipe_from_dict({"merge_method": "ties", "base_model": str(base), "models": [
        {"model": str(m), "parameters": {"weight": 1.0, "density": 0.5}} for m in (a, b)]})
    gen = merge(recipe, tmp_path / "m")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert isinstance(events[0], PlanSummary)
    tensors = [e for e in events if isinstance(e, TensorMetrics)]
    layers = [e for e in events if isinstance(e, LayerMetrics)]
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(tensors) == events[0].tensors == result.tensors
    assert [m.layer for m in layers] == [0, 1, 2, 3, None]
    assert progress[-1].bytes_done == progress[-1].bytes_total == result.bytes_written
    for t in tensors:
        assert t.models == (a.name, b.name) and len(t.input_change) == 2
        assert 0 <= t.sign_conflict <= 1 and 0 < t.kept_fraction <= 1
        # the fine-tunes moved by ~2% of the weights' spread; TIES keeps part of that
        assert 0 < t.result_change < 1
    assert all(0 < layer.kept_fraction < 1 for layer in layers)


def test_every_input_format_in_one_merge(llama_family, tmp_path, run_cli, monkeypatch):
    """A .bin folder, a bare .safetensors file and a repo id from the local HF cache merge to the
    same tensors as the original folders."""
    from safetensors.torch import save_file

    base, a, b = llama_family
    # base as org/base in a Hugging Face cache
    cache, commit = tmp_path / "hub", "89abcdef0123456789abcdef0123456789abcdef"
    snap = cache / "models--org--base" / "snapshots" / commit
    shutil.copytree(base, snap)
    (cache / "models--org--base" / "refs").mkdir()
    (cache / "models--org--base" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # a as pytorch_model.bin, b as one bare .safetensors file
    bin_dir = tmp_path / "a-bin"
    bin_dir.mkdir()
    shutil.copy(a / "config.json", bin_dir)
    torch.save(load_state(a), bin_dir / "pytorch_model.bin")
    bare = tmp_path / "b.safetensors"
    save_file(load_state(b), bare)

    def recipe(base_ref, a_ref, b_ref, name):
        return write_recipe(tmp_path, {"merge_method": "task_arithmetic", "base_model": base_ref, "models": [
            {"model": a_ref, "parameters": {"weight": 0.7}}, {"model": b_ref, "parameters": {"weight": 0.4}}]}, name)

    code, _, err = run_cli("merge", recipe("org/base", str(bin_dir), str(bare), "mixed.yml"), tmp_path / "mixed",
                           "--no-progress")
    assert code == 0, err
    code, _, err = run_cli("merge", recipe(str(base), str(a), str(b), "plain.yml"), tmp_path / "plain", "--no-progress")
    assert code == 0, err
    mixed, plain = load_state(tmp_path / "mixed"), load_state(tmp_path / "plain")
    assert mixed.keys() == plain.keys()
    for name in plain:
        assert torch.equal(mixed[name], plain[name]), name
    front = (tmp_path / "mixed" / "README.md").read_text()
    assert "- org/base" in front  # the card names the hub model by its repo id


def test_methods_command_lists_every_method(run_cli):
    from fusion_gui.engine.methods import registry

    code, out, _ = run_cli("methods")
    assert code == 0
    for name, method in registry().items():
        assert f"{name} — " in out
        for p in method.params:
            assert f"- {p.name} (" in out


def test_relative_model_paths_fall_back_to_the_recipe_folder_with_a_note(llama_family, tmp_path, run_cli):
    """mergekit reads `./ft` from the folder it runs in; where nothing is there, the recipe's folder is tried."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    for name, src in zip(("base", "ft1", "ft2"), llama_family):
        shutil.copytree(src, project / name)
    recipe = project / "recipe.yml"
    recipe.write_text("merge_method: linear\nmodels:\n  - model: ./ft1\n    parameters: {weight: 0.5}\n"
                      "  - model: ./ft2\n    parameters: {weight: 0.5}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    here = os.getcwd()
    os.chdir(elsewhere)  # not monkeypatch.chdir: run_cli undoes the fixture's patches after each call
    try:
        code, _, err = run_cli("merge", recipe, tmp_path / "out", "--no-progress", "--no-smoke")
        assert code == 0, err
        assert "read against its folder" in err and "./ft1" in err
        assert (tmp_path / "out" / "config.json").is_file()

        (elsewhere / "ft1").mkdir()  # a folder of that name where we run: mergekit's reading wins
        code, _, err = run_cli("merge", recipe, tmp_path / "out2", "--no-progress", "--no-smoke", "--dry-run")
        assert code == 2 and "ft1" in err, err  # ./ft1 here is empty: the error names the path as written
    finally:
        os.chdir(here)
