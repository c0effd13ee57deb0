"""The batched greedy decoder (engine/evaluate/greedy.py) and the search's skill batch give exactly the answers
and scores of the earlier path, `model.generate` on prompts grouped by length (no padding), on the demo models
and on in-memory merges of them."""

from __future__ import annotations

import pytest
import torch
from test_demo_eval import demo_models, run_job  # noqa: F401 - the shared session build

from fusion_gui.engine.evaluate.demo import SKILLS, skill_examples
from fusion_gui.engine.evaluate.scoring import _decode, _greedy, _pad_id, skill_score
from fusion_gui.engine.search.candidates import CandidateMerger
from fusion_gui.engine.search.objectives import Objectives
from fusion_gui.engine.search.settings import Objective, SearchSettings, Tuned

WEIGHTS = ((0.8, 0.8), (0.3, 1.4), (1.6, 0.1), (1.2, 1.2))  # merges whose scores differ from the fine-tunes'


def reference_answers(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """The earlier implementation: generate() per prompt length, so no row is padded."""
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    out = [""] * len(prompts)
    for length in sorted({len(e) for e in encoded}):
        idx = [i for i, e in enumerate(encoded) if len(e) == length]
        ids = torch.tensor([encoded[i] for i in idx])
        with torch.no_grad():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=_pad_id(model, tokenizer))
        for i, row in zip(idx, gen[:, length:].tolist()):
            out[i] = _decode(tokenizer, row)
    return out


def reference_accuracy(model, tokenizer, problems) -> float:
    got = reference_answers(model, tokenizer, [p for p, _ in problems], max(len(a) for _, a in problems) + 1)
    return sum(g.strip() == want for g, (_, want) in zip(got, problems)) / len(problems)


def recipe(demo, weights) -> dict:
    return {"merge_method": "task_arithmetic", "base_model": str(demo.base), "dtype": "float32",
            "models": [{"model": str(m), "parameters": {"weight": w}}
                       for m, w in zip((demo.count, demo.reverse), weights)]}


@pytest.fixture(scope="module")
def merger(demo_models, one_torch_thread):  # noqa: F811
    held = CandidateMerger([str(demo_models.count), str(demo_models.reverse)], str(demo_models.base), "cpu")
    yield held
    held.close()


def test_batched_answers_are_generate_s_answers(demo_models, merger):  # noqa: F811
    problems = skill_examples("count", "eval", 150) + skill_examples("reverse", "eval", 150)
    prompts = [p for p, _ in problems]
    longest = max(len(a) for _, a in problems) + 1
    from fusion_gui.engine.evaluate.scoring import load_causal_lm

    loaded = [load_causal_lm(p) for p in demo_models.paths]
    compared = 0
    for model in [*loaded, *(recipe(demo_models, w) for w in WEIGHTS)]:
        model, tokenizer = merger.load(model) if isinstance(model, dict) else model
        want = reference_answers(model, tokenizer, prompts, longest)
        got = [""] * len(prompts)
        for _ in _greedy(model, tokenizer, prompts, longest, got):
            pass
        assert got == want
        compared += sum(bool(w) for w in want)
    assert compared > len(prompts)  # the models answered something, not only empty strings


def test_eval_scores_are_the_earlier_scores(demo_models):  # noqa: F811
    from fusion_gui.engine.evaluate.scoring import load_causal_lm

    for path in demo_models.paths:
        loaded = load_causal_lm(path)
        for skill in SKILLS:
            row, _ = run_job(skill_score(path, skill, n=60, loaded=loaded))
            assert row.value == reference_accuracy(*loaded, skill_examples(skill, "eval", 60))


def search_settings(demo) -> SearchSettings:
    return SearchSettings(method="task_arithmetic", base=str(demo.base), models=(str(demo.count), str(demo.reverse)),
                          tune=(Tuned("weight", "layer", 0.0, 1.6, 0.8),), layer_granularity=1,
                          objectives=(Objective("count"), Objective("reverse")), examples=40, held_out=60,
                          trials=2, device="cpu")


def test_search_scores_are_the_earlier_scores(demo_models, merger, tmp_path):  # noqa: F811
    objectives = Objectives(search_settings(demo_models), tmp_path / "data")
    seen = set()
    for weights in WEIGHTS:
        model, tokenizer = merger.load(recipe(demo_models, weights))
        for split in ("search", "held_out"):
            scores = objectives.score(model, tokenizer, split)
            problems = {s: skill_examples(s, "eval", 100) for s in SKILLS}
            part = {s: p[:40] if split == "search" else p[40:] for s, p in problems.items()}
            assert scores == {s: reference_accuracy(model, tokenizer, part[s]) for s in SKILLS}
            seen.add(tuple(scores.values()))
    assert len(seen) > 2  # the merges score differently: the comparison can tell them apart


def test_a_search_tokenizes_its_prompts_once(demo_models, merger, tmp_path, monkeypatch):  # noqa: F811
    objectives = Objectives(search_settings(demo_models), tmp_path / "data")
    model, tokenizer = merger.load(recipe(demo_models, (0.8, 0.8)))
    calls = []
    real = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    first = objectives.score(model, tokenizer, "search")
    assert len(calls) == 80  # 40 prompts a skill
    model, tokenizer = merger.load(recipe(demo_models, (1.2, 0.4)))
    second = objectives.score(model, tokenizer, "search")
    assert len(calls) == 80 and first != second
