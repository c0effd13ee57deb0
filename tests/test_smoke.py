"""Smoke check: a good tiny merge is ok; a merge with a shuffled embedding, a tokenizer from another
vocabulary, a NaN or a config that disagrees with its tensors is called broken."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from fusion_gui.engine.evaluate.smoke import is_degenerate, smoke_check
from fusion_gui.engine.merge.recipe import load_recipe
from fusion_gui.engine.merge.run import MergeOptions, merge
from fusion_gui.engine.synthetic_models import write_tiny_tokenizer
from helpers import drain
from smoke_models import perturbed_copy, trained_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    a = trained_tiny(root / "a")
    return a, perturbed_copy(a, root / "b", seed=7)


@pytest.fixture(scope="module")
def good_merge(trained_pair, tmp_path_factory):
    a, b = trained_pair
    recipe = load_recipe(f"merge_method: linear\nmodels:\n- model: {a}\n  parameters: {{weight: 0.5}}\n"
                         f"- model: {b}\n  parameters: {{weight: 0.5}}\ndtype: float32\n")
    out = tmp_path_factory.mktemp("merged") / "out"
    result, events = drain(merge(recipe, out, MergeOptions(device="cpu")))
    return out, result, events


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_tensor(folder, name, edit):
    for file in folder.glob("*.safetensors"):
        tensors = load_file(file)
        if name in tensors:
            tensors[name] = edit(tensors[name])
            save_file(tensors, file, metadata={"format": "pt"})
            return
    raise AssertionError(f"{name} not found")


def test_a_good_merge_is_ok_and_its_card_says_so(good_merge):
    out, result, events = good_merge
    assert result.smoke is not None and result.smoke.verdict == "ok", result.smoke
    assert result.smoke.perplexity < 20 and len(result.smoke.input_perplexity) == 2
    assert "Verdict: **ok**" in (out / "README.md").read_text()


def test_a_shuffled_embedding_is_broken(good_merge, trained_pair, tmp_path):
    folder = _copy(good_merge[0], tmp_path / "shuffled")
    perm = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    _edit_tensor(folder, "model.embed_tokens.weight", lambda t: t[perm].contiguous())
    verdict, _ = drain(smoke_check(folder, trained_pair, device="cpu"))
    assert verdict.verdict == "broken"
    assert any("times the worst input" in r for r in verdict.reasons), verdict.reasons


def test_a_tokenizer_from_a_larger_vocabulary_is_broken(good_merge, trained_pair, tmp_path):
    folder = _copy(good_merge[0], tmp_path / "bigvocab")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    write_tiny_tokenizer(folder, 300)
    verdict, _ = drain(smoke_check(folder, trained_pair, device="cpu"))
    assert verdict.verdict == "broken"
    assert any("have no embedding" in r for r in verdict.reasons), verdict.reasons


def test_a_tokenizer_from_another_vocabulary_of_the_same_size_is_broken(good_merge, trained_pair, tmp_path):
    """Same ids, other meanings: only the perplexity can tell."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = _copy(good_merge[0], tmp_path / "othervocab")
    words = ["<unk>", "<s>", "</s>"] + [chr(c) for c in reversed(range(32, 127))]
    words += [f"tok{i}" for i in range(256 - len(words))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(folder)
    verdict, _ = drain(smoke_check(folder, trained_pair, device="cpu"))
    assert verdict.verdict == "broken", verdict.reasons


def test_a_nan_and_a_wrong_layer_count_are_broken_and_named(good_merge, tmp_path):
    folder = _copy(good_merge[0], tmp_path / "nan")
    _edit_tensor(folder, "model.layers.1.mlp.up_proj.weight",
                 lambda t: t.index_fill(0, torch.tensor([3]), float("nan")))
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    verdict, _ = drain(smoke_check(folder, device="cpu"))
    assert verdict.verdict == "broken"
    assert any("model.layers.1.mlp.up_proj.weight" in r for r in verdict.reasons)
    assert any("3 layers" in r for r in verdict.reasons)


def test_the_merge_can_skip_the_smoke_check(trained_pair, tmp_path):
    a, b = trained_pair
    recipe = load_recipe(f"merge_method: linear\nmodels:\n- model: {a}\n  parameters: {{weight: 1}}\n"
                         f"- model: {b}\n  parameters: {{weight: 1}}\n")
    result, _ = drain(merge(recipe, tmp_path / "out", MergeOptions(device="cpu", smoke=False)))
    assert result.smoke is None and "Smoke check" not in (tmp_path / "out" / "README.md").read_text()


def test_degenerate_repetition():
    assert is_degenerate("the the the the the the the the")
    assert is_degenerate("!!!!!!!!!!!!!!!!!!!!!!!!")
    assert not is_degenerate(" baker opens his shop, the children walk")


def test_a_failing_check_does_not_lose_the_merge_but_cancel_still_cancels(monkeypatch, tmp_path):
    from fusion_gui.engine.errors import Cancelled
    from fusion_gui.engine.evaluate import smoke

    def failing(*args, **kwargs):
        raise ValueError("odd file")
        yield

    monkeypatch.setattr(smoke, "smoke_check", failing)
    verdict, _ = drain(smoke.check_output(tmp_path, []))
    assert verdict.verdict == "suspicious" and "odd file" in verdict.reasons[0]

    def cancelled(*args, **kwargs):
        raise Cancelled("Cancelled by the user.")
        yield

    monkeypatch.setattr(smoke, "smoke_check", cancelled)
    with pytest.raises(Cancelled):
        drain(smoke.check_output(tmp_path, []))
