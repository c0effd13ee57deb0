"""LoRA: extract an adapter from a fine-tune (truncated SVD), load it with peft, and use adapter
folders (extracted or made by peft) as models in recipes."""

import json
from pathlib import Path

import pytest
import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.adapter import AdapterReader
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.lora import extract_lora, low_rank_factors
from fusion_gui.engine.merge import MergeOptions, merge
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config
from fusion_gui.events import LoraModuleError
from helpers import drain

pytest.importorskip("peft")

TARGETS = ("q_proj", "v_proj", "o_proj", "down_proj")
TOKENS = torch.tensor([[1, 5, 9, 12, 40, 77]])




def state(folder) -> dict[str, torch.Tensor]:
    with open_model(str(folder)) as reader:
        return {name: reader.get(name) for name in reader.tensors}


def changed_copy(seed: int, rank: int | None, scale: float = 0.05):
    """The tiny base plus a change in the TARGETS weights: exactly rank `rank`, or full rank (None)."""
    model = build_model(tiny_config("llama", layers=2), seed=0)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and any(t in name for t in TARGETS):
                m, n = param.shape
                if rank is None:
                    change = torch.randn(m, n, generator=gen) * scale / 4
                else:
                    change = torch.randn(m, rank, generator=gen) @ torch.randn(rank, n, generator=gen) * scale / rank
                param.add_(change)
    return model


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """{'base', 'low' (rank-4 change), 'full' (full-rank change), 'other' (another fine-tune)}: folders."""
    root = tmp_path_factory.mktemp("lora")
    paths = {"base": save_model(build_model(tiny_config("llama", layers=2), seed=0), root / "base")}
    paths["low"] = save_model(changed_copy(1, 4), root / "low")
    paths["full"] = save_model(changed_copy(2, None), root / "full")
    paths["other"] = save_model(changed_copy(3, None), root / "other")
    return paths


def extract(family, which: str, out: Path, rank: int, threshold=None):
    return drain(extract_lora(str(family[which]), str(family["base"]), out, rank, threshold))


def test_rank4_change_is_recovered_exactly_and_peft_loads_the_adapter(family, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, events = extract(family, "low", tmp_path / "ad", rank=4)
    modules = [e for e in events if isinstance(e, LoraModuleError)]
    assert len(modules) == 2 * len(TARGETS) == len(result.modules)
    assert all(m.rank == 4 and m.rel_error < 1e-5 for m in modules)
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4 and config["peft_type"] == "LORA"
    assert config["base_model_name_or_path"] == str(family["base"])
    assert not list(tmp_path.glob(".ad.partial-*"))

    finetune = AutoModelForCausalLM.from_pretrained(family["low"])
    base = AutoModelForCausalLM.from_pretrained(family["base"])
    assert not torch.allclose(base(TOKENS).logits, finetune(TOKENS).logits, atol=1e-3)
    peft_model = PeftModel.from_pretrained(base, tmp_path / "ad")
    torch.testing.assert_close(peft_model(TOKENS).logits, finetune(TOKENS).logits, atol=1e-4, rtol=1e-4)


def test_error_falls_as_rank_grows_and_threshold_keeps_fewer(family, tmp_path):
    errors = {}
    for rank in (2, 8, 32, 64):
        result, _ = extract(family, "full", tmp_path / f"r{rank}", rank)
        errors[rank] = result.mean_rel_error
        assert all(m.rank == rank or (rank == 64 and "v_proj" in m.name and m.rank == 32) for m in result.modules)
    assert 1 > errors[2] > errors[8] > errors[32] > errors[64]
    assert errors[64] < 1e-5  # rank = the smaller dimension: exact
    # Ranks that differ per module (v_proj is 32 x 64) go to rank_pattern; peft honours it.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = json.loads((tmp_path / "r64" / "adapter_config.json").read_text())
    assert config["r"] == 64 and set(config["rank_pattern"].values()) == {32}
    finetune = AutoModelForCausalLM.from_pretrained(family["full"])
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(family["base"]), tmp_path / "r64")
    torch.testing.assert_close(peft_model(TOKENS).logits, finetune(TOKENS).logits, atol=1e-4, rtol=1e-4)
    # The reported error is the real one: check a module by hand.
    a_b = state(tmp_path / "r8")
    ft, base = state(family["full"]), state(family["base"])
    name = "model.layers.1.self_attn.q_proj.weight"
    delta = ft[name] - base[name]
    reported = next(m.rel_error for m in drain(extract_lora(str(family["full"]), str(family["base"]),
                                                            tmp_path / "again", 8))[0].modules if m.name == name)
    assert abs(torch.linalg.norm(a_b[name] - ft[name]) / torch.linalg.norm(delta) - reported) < 1e-4
    # A threshold keeps only singular values above threshold * sigma_max.
    result, _ = extract(family, "full", tmp_path / "thr", 32, threshold=0.6)
    kept = {m.name: m.rank for m in result.modules}
    s = torch.linalg.svdvals(delta)
    assert kept[name] == int((s >= 0.6 * s[0]).sum()) < 32
    assert all(1 <= k <= 32 for k in kept.values())
    b, a = low_rank_factors(delta, 32, threshold=0.6)
    assert a.shape[0] == kept[name] and b.shape == (delta.shape[0], kept[name])


@pytest.mark.parametrize("which,rank", [("low", 4), ("full", 16)])
def test_round_trip_adapter_in_a_recipe_approximates_the_finetune(family, tmp_path, which, rank):
    result, _ = extract(family, which, tmp_path / "ad", rank)
    errors = {m.name: m.rel_error for m in result.modules}
    outputs = {}
    for stand_in in (str(family[which]), str(tmp_path / "ad")):
        recipe = recipe_from_dict({"merge_method": "task_arithmetic", "base_model": str(family["base"]), "models": [
            {"model": stand_in, "parameters": {"weight": 0.5}},
            {"model": str(family["other"]), "parameters": {"weight": 0.5}}]})
        out = tmp_path / f"merged-{len(outputs)}"
        drain(merge(recipe, out, MergeOptions(device="cpu")))
        outputs[stand_in] = state(out)
    from_ft, from_adapter = outputs.values()
    ft, base = state(family[which]), state(family["base"])
    for name, tensor in from_ft.items():
        gap = torch.linalg.norm(from_adapter[name] - tensor).item()
        allowed = 0.5 * errors.get(name, 0.0) * torch.linalg.norm(ft[name] - base[name]).item()
        assert gap <= allowed * 1.01 + 1e-5, name
    if which == "low":
        for name, tensor in from_ft.items():
            torch.testing.assert_close(from_adapter[name], tensor, atol=1e-5, rtol=1e-5)


def _peft_adapter(arch: str, base: Path, out: Path, targets, modules_to_save):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    model = build_model(tiny_config(arch, layers=2), seed=0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), modules_to_save=modules_to_save,
                        lora_dropout=0.0, use_rslora=arch == "gpt2")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name or "lora_embedding" in name or "modules_to_save" in name:  # peft zeroes B (A for embeddings)
                param.normal_(0, 0.1)
    peft_model.peft_config["default"].base_model_name_or_path = str(base)
    peft_model.save_pretrained(out)
    return peft_model.merge_and_unload().state_dict()


def test_adapter_made_by_peft_merges_like_merge_and_unload(family, tmp_path):
    expected = _peft_adapter("llama", family["base"], tmp_path / "peft-ad",
                             ["q_proj", "v_proj", "down_proj", "embed_tokens"], ["lm_head"])
    recipe = recipe_from_dict({"merge_method": "linear", "models": [
        {"model": str(tmp_path / "peft-ad"), "parameters": {"weight": 1.0}}]})
    drain(merge(recipe, tmp_path / "out", MergeOptions(device="cpu")))
    merged = state(tmp_path / "out")
    assert merged.keys() <= expected.keys()
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=1e-6, msg=name)
    base = state(family["base"])
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert not torch.equal(merged["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
    assert not torch.equal(merged["lm_head.weight"], base["lm_head.weight"])


def test_peft_adapter_on_gpt2_conv1d_with_rslora(tmp_path):
    base = save_model(build_model(tiny_config("gpt2", layers=2), seed=0), tmp_path / "gpt2-base")
    expected = _peft_adapter("gpt2", base, tmp_path / "ad", ["c_attn", "c_proj"], ["ln_f"])
    with open_model(str(tmp_path / "ad")) as reader:
        assert isinstance(reader, AdapterReader) and reader.config["model_type"] == "gpt2"
        assert len(reader.loras) == 6  # c_attn, attn.c_proj (square), mlp.c_proj in 2 layers
        for name in reader.tensors:
            torch.testing.assert_close(reader.get(name), expected[name], atol=1e-6, rtol=1e-6, msg=name)


def test_extract_lora_cli_prints_the_error_summary(family, tmp_path, run_cli):
    out = tmp_path / "cli-ad"
    code, stdout, stderr = run_cli("extract-lora", family["low"], family["base"], out, "--rank", 4,
                                   "--no-progress", "--table")
    assert code == 0, stderr
    assert "mean" in stdout and "max" in stdout and "q_proj" in stdout
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    code, _, stderr = run_cli("extract-lora", family["low"], family["base"], out, "--rank", 4, "--no-progress")
    assert code == 2 and "already exists" in stderr
    code, _, stderr = run_cli("extract-lora", family["low"], family["base"], tmp_path / "x", "--rank", 0)
    assert code == 2 and "rank" in stderr


def test_bad_inputs_raise_input_error(family, tmp_path):
    with pytest.raises(InputError, match="rank"):
        drain(extract_lora(str(family["low"]), str(family["base"]), tmp_path / "a", 0))
    with pytest.raises(InputError, match="threshold"):
        drain(extract_lora(str(family["low"]), str(family["base"]), tmp_path / "a", 4, threshold=2.0))
    wide = save_model(build_model(tiny_config("llama", layers=2, hidden=32), seed=0), tmp_path / "wide")
    with pytest.raises(InputError, match="is .* in the fine-tune"):
        drain(extract_lora(str(wide), str(family["base"]), tmp_path / "a", 4))
    deep = save_model(build_model(tiny_config("llama", layers=3), seed=0), tmp_path / "deep")
    with pytest.raises(InputError, match="has no tensor"):
        drain(extract_lora(str(deep), str(family["base"]), tmp_path / "a", 4))
    with pytest.raises(InputError, match="does not change any Linear"):
        drain(extract_lora(str(family["base"]), str(family["base"]), tmp_path / "a", 4))
    with pytest.raises(InputError, match="not found"):
        drain(extract_lora(str(tmp_path / "nope"), str(family["base"]), tmp_path / "a", 4))
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob(".a.partial-*"))
    # Broken adapter folders.
    drain(extract_lora(str(family["low"]), str(family["base"]), tmp_path / "ad", 4))
    config_path = tmp_path / "ad" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    for change, pattern in (({"base_model_name_or_path": None}, "names no base"),
                            ({"base_model_name_or_path": str(tmp_path / "gone")}, "not found"),
                            ({"use_dora": True}, "DoRA"),
                            ({"base_model_name_or_path": str(wide)}, "update, but the base tensor")):
        config_path.write_text(json.dumps({**config, **change}))
        with pytest.raises(InputError, match=pattern):
            open_model(str(tmp_path / "ad"))


def test_big_matrices_use_the_randomized_svd_and_stay_accurate():
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(1100, 8, generator=gen) @ torch.randn(8, 1030, generator=gen)
    b, a = low_rank_factors(delta, 8)  # 1030 >= LOWRANK_MIN_DIM: svd_lowrank
    assert a.shape == (8, 1030) and b.shape == (1100, 8)
    assert torch.linalg.norm(delta - b @ a) / torch.linalg.norm(delta) < 1e-4


def test_cancel_leaves_nothing(family, tmp_path):
    from fusion_gui.engine.cancel import CancelToken
    from fusion_gui.engine.errors import Cancelled

    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        drain(extract_lora(str(family["low"]), str(family["base"]), tmp_path / "c", 4, cancel=token))
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.partial-*"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_extraction_on_cuda_matches_the_cpu(family, tmp_path):
    from fusion_gui.events import Log

    cpu, _ = extract(family, "low", tmp_path / "cpu", 4)
    gpu, events = drain(extract_lora(str(family["low"]), str(family["base"]), tmp_path / "gpu", 4, device="cuda"))
    assert any("on cuda" in e.message for e in events if isinstance(e, Log))
    assert [(m.name, m.rank) for m in gpu.modules] == [(m.name, m.rank) for m in cpu.modules]
    on_cpu, on_gpu = state(tmp_path / "cpu"), state(tmp_path / "gpu")
    for name, tensor in on_cpu.items():
        torch.testing.assert_close(on_gpu[name], tensor, atol=1e-5, rtol=1e-5, msg=name)
