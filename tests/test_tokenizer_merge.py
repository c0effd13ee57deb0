"""Tokenizer merges (tokenizer_source / tokenizer:), with mergekit 0.1.5's rules, on tiny models whose
vocabularies differ. benchmarks/check_tokenizer_parity.py runs the same recipes through mergekit itself.

The models (fixtures/tiny_models.build_vocab_family): base = 30 words + <tool> (31 rows); a = base's tokens +
<a_only>, <ab> (33 rows); b = the letters in reverse order, then <b_only>, <ab>, <tool>, in 40 rows.
"""

import json
import shutil

import pytest
import torch
import yaml

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.merge import merge, plan_merge
from fusion_gui.engine.merge.recipe import load_recipe
from fusion_gui.engine.merge.vocab_compare import compare_vocabularies
from helpers import drain

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"
TEXT = "hello <ab>world<b_only> <a_only>x<tool>"


@pytest.fixture(scope="module")
def vocab_models(tmp_path_factory):
    from fixtures.tiny_models import build_vocab_family

    return build_vocab_family(tmp_path_factory.mktemp("vocab"))


def state(folder) -> dict[str, torch.Tensor]:
    with open_model(str(folder)) as reader:
        return {name: reader.get(name) for name in reader.tensors}


def vocab_of(folder) -> dict[str, int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True).get_vocab()


def recipe(models: list, *, base=None, **extra):
    """A float32 linear recipe over (model, weight) pairs, plus any top-level keys."""
    data = {"merge_method": "linear", "dtype": "float32",
            "models": [{"model": str(m), "parameters": {"weight": w}} for m, w in models], **extra}
    if base is not None:
        data["base_model"] = str(base)
    return load_recipe(yaml.safe_dump(data, sort_keys=False))


def run(rec, out):
    drain(merge(rec, out))
    return out


class Rows:
    """Row of a tensor for a token, read by token string through each model's own tokenizer."""

    def __init__(self, folder):
        self.tensors, self.vocab = state(folder), vocab_of(folder)

    def __call__(self, name: str, token: str) -> torch.Tensor:
        return self.tensors[name][self.vocab[token]]


def close(x, y):
    torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)


def test_union_merge_fills_rows_as_mergekit_does_and_loads_in_transformers(vocab_models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a, b = vocab_models["a"], vocab_models["b"]
    out = run(recipe([(a, 0.5), (b, 0.5)], tokenizer_source="union"), tmp_path / "out")
    ra, rb, ro = Rows(a), Rows(b), Rows(out)
    assert len(ro.vocab) == 34 and set(ro.vocab) == set(ra.vocab) | set(rb.vocab)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 34
    for name in (EMBED, HEAD):
        assert ro.tensors[name].shape == (34, 48)
        for token in ("c", "q", " ", "<tool>", "<ab>"):  # in both, at different ids in b: the mean
            close(ro(name, token), 0.5 * ra(name, token) + 0.5 * rb(name, token))
        close(ro(name, "<a_only>"), ra(name, "<a_only>"))  # in one model only: its row, for both inputs
        close(ro(name, "<b_only>"), rb(name, "<b_only>"))
    for name, tensor in ro.tensors.items():  # everything else is the plain linear merge
        if name not in (EMBED, HEAD):
            close(tensor, 0.5 * ra.tensors[name] + 0.5 * rb.tensors[name])

    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(ids) == TEXT
    assert {tokenizer.convert_tokens_to_ids(t) for t in ("<a_only>", "<b_only>", "<ab>")} <= set(ids)
    model = AutoModelForCausalLM.from_pretrained(out)
    close(model.get_input_embeddings().weight.detach(), ro.tensors[EMBED])
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 34) and torch.isfinite(logits).all()


def test_the_base_row_fills_in_where_the_base_has_the_token_else_the_mean(vocab_models, tmp_path):
    base, a, b = vocab_models["base"], vocab_models["a"], vocab_models["b"]
    ra, rb = Rows(a), Rows(b)
    models = [(base, 0.2), (a, 0.3), (b, 0.5)]
    # <ab> is in a and b, not in base: base's input row is the mean of a's and b's
    out = run(recipe(models, base=base, tokenizer_source="union"), tmp_path / "mean")
    mean = (ra(EMBED, "<ab>") + rb(EMBED, "<ab>")) / 2
    close(Rows(out)(EMBED, "<ab>"), 0.2 * mean + 0.3 * ra(EMBED, "<ab>") + 0.5 * rb(EMBED, "<ab>"))
    # with a as the base model, base's missing row is a's row instead
    out = run(recipe(models, base=a, tokenizer_source="union"), tmp_path / "base-row")
    close(Rows(out)(EMBED, "<ab>"), 0.5 * ra(EMBED, "<ab>") + 0.5 * rb(EMBED, "<ab>"))


def test_base_source_maps_a_permuted_padded_vocabulary(vocab_models, tmp_path):
    base, b = vocab_models["base"], vocab_models["b"]
    out = run(recipe([(base, 0.5), (b, 0.5)], base=base, tokenizer_source="base"), tmp_path / "out")
    rbase, rb, ro = Rows(base), Rows(b), Rows(out)
    assert ro.vocab == rbase.vocab  # the base's tokenizer, ids included
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 31
    for token in rbase.vocab:  # b's rows by token, not by id; its padding rows 33..39 are unused
        close(ro(HEAD, token), 0.5 * rbase(HEAD, token) + 0.5 * rb(HEAD, token))


def test_a_named_model_is_the_tokenizer_source(vocab_models, tmp_path):
    a, b = vocab_models["a"], vocab_models["b"]
    out = run(recipe([(a, 0.4), (b, 0.6)], tokenizer_source=str(b)), tmp_path / "out")
    ra, rb, ro = Rows(a), Rows(b), Rows(out)
    assert ro.vocab == rb.vocab and ro.tensors[EMBED].shape == (33, 48)  # b's 33 tokens, not its 40 rows
    close(ro(EMBED, "z"), 0.4 * ra(EMBED, "z") + 0.6 * rb(EMBED, "z"))
    close(ro(EMBED, "<b_only>"), rb(EMBED, "<b_only>"))


def test_tokens_settings_and_pad_to_multiple_of(vocab_models, tmp_path):
    a, b = vocab_models["a"], vocab_models["b"]
    block = {"source": "union", "pad_to_multiple_of": 16, "tokens": {
        "<a_only>": {"source": {"kind": "zero"}},  # a keeps its own row, b gets zeros
        "<ab>": {"source": str(a), "force": True},  # both take a's row
        "c": {"source": {"kind": "zero"}, "force": True},  # forced to zero in both
        "<new>": {"source": {"kind": "model_token", "model": str(b), "token": "q"}},  # a new token
        "<new2>": {"source": {"kind": "model_token", "model": str(a), "token_id": 5}},
    }}
    out = run(recipe([(a, 0.5), (b, 0.5)], tokenizer=block), tmp_path / "out")
    ra, rb, ro = Rows(a), Rows(b), Rows(out)
    assert len(ro.vocab) == 36 and ro.tensors[EMBED].shape == (48, 48)
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 48
    close(ro(EMBED, "<a_only>"), 0.5 * ra(EMBED, "<a_only>"))
    close(ro(EMBED, "<ab>"), ra(EMBED, "<ab>"))
    assert not ro(EMBED, "c").any()
    close(ro(EMBED, "<new>"), rb(EMBED, "q"))
    close(ro(EMBED, "<new2>"), ra.tensors[EMBED][5])
    padding = ro.tensors[EMBED][36:]  # each input's padding is the mean of its real rows; linear keeps it
    close(padding, ro.tensors[EMBED][:36].mean(0).expand_as(padding))


def test_tied_embeddings_merge_and_load(tmp_path):
    from transformers import AutoModelForCausalLM

    from fixtures.tiny_models import build_vocab_family

    models = build_vocab_family(tmp_path / "gpt2", arch="gpt2")
    out = run(recipe([(models["a"], 0.5), (models["b"], 0.5)], tokenizer_source="union"), tmp_path / "out")
    ro = Rows(out)
    assert ro.tensors["transformer.wte.weight"].shape == (34, 48)
    assert ro.tensors["transformer.wpe.weight"].shape == (128, 48)  # positions are not tokens
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    close(model.lm_head.weight.detach(), ro.tensors["transformer.wte.weight"])


def test_a_base_tokenizer_longer_than_the_embedding_is_stripped(tmp_path):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config
    from fixtures.tiny_models import VOCAB_WORDS, write_word_tokenizer

    paths = []
    for seed in (0, 1):  # 30 rows, but the tokenizer also has <tool> at id 30
        path = save_model(build_model(tiny_config(layers=1, hidden=48, vocab=30), seed), tmp_path / f"m{seed}",
                          tokenizer=False)
        write_word_tokenizer(path, VOCAB_WORDS, ["<tool>"])
        paths.append(path)
    out = run(recipe([(p, 0.5) for p in paths], tokenizer_source="base"), tmp_path / "out")
    assert "<tool>" not in vocab_of(out) and len(vocab_of(out)) == 30
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 30


def test_the_plan_gives_vocabulary_tensors_the_output_shape(vocab_models, tmp_path):
    a, b = vocab_models["a"], vocab_models["b"]
    plan = plan_merge(recipe([(a, 0.5), (b, 0.5)], tokenizer={"pad_to_multiple_of": 8}), tmp_path / "out")
    try:
        shapes = {t.name: t.shape for t in plan.tasks if t.permute_vocab}
        assert shapes == {EMBED: (40, 48), HEAD: (40, 48)}  # the union's 34 tokens, padded to 40
        assert plan.summary.output_bytes == sum(t.out_bytes for t in plan.tasks)
    finally:
        plan.close()


def test_without_a_tokenizer_source_the_vocabularies_must_match(vocab_models, tmp_path):
    with pytest.raises(InputError, match="Shape mismatch for tensor 'model.embed_tokens.weight'"):
        plan_merge(recipe([(vocab_models["a"], 0.5), (vocab_models["b"], 0.5)]), tmp_path / "out")


def test_compare_vocabularies(vocab_models):
    result = compare_vocabularies([str(vocab_models[k]) for k in ("base", "a", "b")])
    assert [(m.label, m.tokenizer_size, m.embedding_rows, m.only_here) for m in result.models] == [
        ("llama-vocab-base", 31, 31, 0), ("llama-vocab-a", 33, 33, 2), ("llama-vocab-b", 33, 40, 2)]
    assert (result.union_size, result.common_size) == (34, 31)
    assert result.partial_tokens == (("<a_only>", (False, True, False)), ("<ab>", (False, True, True)),
                                     ("<b_only>", (False, False, True)))


@pytest.mark.parametrize("block, message", [
    ({"tokenizer_source": "union", "tokenizer": {"source": "base"}}, "both 'tokenizer_source' and 'tokenizer'"),
    ({"tokenizer": {"sauce": "union"}}, "Unknown key 'sauce' in 'tokenizer'"),
    ({"tokenizer": {"pad_to_multiple_of": 0}}, "'pad_to_multiple_of' in 'tokenizer' must be a positive integer"),
    ({"tokenizer": {"tokens": {"<x>": {"froce": True}}}}, r"Unknown key 'froce' in tokenizer.tokens\['<x>'\]"),
    ({"tokenizer": {"tokens": {"<x>": {"force": "yes"}}}}, "'force' in tokenizer.tokens"),
    ({"tokenizer": {"tokens": {"<x>": {"source": {"kind": "one"}}}}}, "must be zero or model_token"),
    ({"tokenizer": {"tokens": {"<x>": {"source": {"kind": "model_token", "model": "m"}}}}},
     "exactly one of 'token_id' or 'token'"),
    ({"tokenizer": {"tokens": ["<x>"]}}, "'tokens' in 'tokenizer' must map each token"),
])
def test_bad_tokenizer_settings_name_the_key(block, message):
    data = {"merge_method": "linear", "models": [{"model": "m1"}, {"model": "m2"}], **block}
    with pytest.raises(InputError, match=message):
        load_recipe(yaml.safe_dump(data))


@pytest.mark.parametrize("tokens, message", [
    ({"<x>": {"source": "elsewhere", "force": True}}, "'elsewhere', which is not among the models"),
    ({"<b_only>": {"source": "A"}}, "'llama-vocab-a', which does not have that token"),
    ({"<x>": {"source": {"kind": "model_token", "model": "A", "token": "<nope>"}}}, "has no such token"),
    ({"<x>": {"source": {"kind": "model_token", "model": "A", "token_id": 33}}}, "which has only 33 rows"),
])
def test_token_settings_the_models_cannot_meet_fail_at_plan_time(vocab_models, tmp_path, tokens, message):
    a, b = str(vocab_models["a"]), str(vocab_models["b"])
    tokens = json.loads(json.dumps(tokens).replace('"A"', json.dumps(a)))
    with pytest.raises(InputError, match=message):
        plan_merge(recipe([(a, 0.5), (b, 0.5)], tokenizer={"tokens": tokens}), tmp_path / "out")


def test_a_model_without_tokenizer_files_is_named(vocab_models, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(vocab_models["b"], bare)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        (bare / file).unlink()
    for rec in (recipe([(vocab_models["a"], 0.5), (bare, 0.5)], tokenizer_source="union"),
                recipe([(vocab_models["a"], 0.5), (bare, 0.5)], tokenizer_source="base")):
        with pytest.raises(InputError, match="Model 'bare' has no tokenizer files"):
            plan_merge(rec, tmp_path / "out")
    with pytest.raises(InputError, match="Model 'bare' has no tokenizer files"):
        compare_vocabularies([str(vocab_models["a"]), str(bare)])


def test_the_tokenizer_block_round_trips_and_an_empty_one_means_union():
    from fusion_gui.engine.merge.recipe import dump_recipe

    text = """merge_method: linear
models: [m1, m2]
tokenizer:
  pad_to_multiple_of: 8
  tokens:
    <x>: {source: m1, force: true}
    <y>: {source: {kind: model_token, model: m2, token_id: 3}}
    <z>:
"""
    rec = load_recipe(text)
    assert rec.tokenizer == {"source": "union", "pad_to_multiple_of": 8, "tokens": {
        "<x>": {"source": "m1", "force": True}, "<y>": {"source": {"kind": "model_token", "model": "m2", "token_id": 3}},
        "<z>": {}}}
    assert load_recipe(dump_recipe(rec)) == rec
    empty = load_recipe("merge_method: linear\nmodels: [m1, m2]\ntokenizer: {}\n")
    assert load_recipe(dump_recipe(empty)).tokenizer == {"source": "union"}


def test_dry_run_of_a_union_merge(vocab_models, tmp_path, run_cli):
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump({"merge_method": "linear", "tokenizer_source": "union", "models": [
        {"model": str(vocab_models["a"]), "parameters": {"weight": 0.5}},
        {"model": str(vocab_models["b"]), "parameters": {"weight": 0.5}}]}))
    code, out, err = run_cli("merge", path, tmp_path / "out", "--dry-run")
    assert code == 0, err
    assert not (tmp_path / "out").exists()
    # a: 30 words + <tool> <a_only> <ab>; b adds <b_only>: 34 tokens, the embedding and head re-ordered
    assert ("note: tokenizer: union, 34 tokens in 34 embedding rows; model.embed_tokens.weight, lm_head.weight "
            "re-ordered into it for every model") in out
