"""Demo models and evaluation: deterministic builds, skills that really differ, exact perplexity, the CLI."""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import pytest
import torch

from fusion_gui.engine.evaluate.demo import DemoSpec, SKILLS, build_demo, skill_examples
from fusion_gui.engine.evaluate.scoring import evaluate, generate, load_causal_lm, perplexity
from fusion_gui.events import StepProgress
from helpers import drain

SMALL = DemoSpec(layers=1, hidden=32, pretrain_steps=12, finetune_steps=6, batch=8)


run_job = drain


@pytest.fixture(scope="session")
def demo_models(request, tmp_path_factory):
    """The full demo build. Kept in pytest's cache: build_demo rebuilds only when its stamp (DEMO_VERSION,
    app and library versions, spec) changes, so a later session reuses it."""
    cache = getattr(request.config, "cache", None)
    # one fixed folder per session either way: test_ui_eval.py imports this fixture (a second copy)
    root = Path(cache.mkdir("fusion-gui-demo")) if cache else tmp_path_factory.getbasetemp() / "fusion-gui-demo"
    return run_job(build_demo(root / "demo-models"))[0]


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_builds_write_identical_files_and_a_second_run_reuses_them(tmp_path):
    first, events = run_job(build_demo(tmp_path / "a", SMALL))
    second, _ = run_job(build_demo(tmp_path / "b", SMALL))
    assert first.built and second.built
    hashes = file_hashes(tmp_path / "a")
    assert hashes == file_hashes(tmp_path / "b")
    assert {"base/config.json", "count/model.safetensors", "reverse/tokenizer.json", "demo.json"} <= set(hashes)
    stages = {e.stage for e in events if isinstance(e, StepProgress)}
    assert stages == {"pretrain base", "fine-tune count", "fine-tune reverse"}
    again, _ = run_job(build_demo(tmp_path / "a", SMALL))
    assert not again.built and file_hashes(tmp_path / "a") == hashes
    # the hashes could not simply be equal by accident: another seed trains other weights
    run_job(build_demo(tmp_path / "c", DemoSpec(**{**SMALL.__dict__, "seed": 1})))
    assert file_hashes(tmp_path / "c")["base/model.safetensors"] != hashes["base/model.safetensors"]


def test_the_build_and_its_reuse_need_no_source_files(tmp_path, monkeypatch):
    """A packaged app has bytecode only: building and reusing the demo must not read demo.py."""
    import fusion_gui.engine.evaluate.demo as demo

    monkeypatch.setattr(demo, "__file__", str(tmp_path / "no-such-dir" / "demo.py"))
    first, _ = run_job(build_demo(tmp_path / "d", SMALL))
    again, _ = run_job(build_demo(tmp_path / "d", SMALL))
    assert first.built and not again.built


def test_held_out_problems_are_never_trained_on():
    for skill in SKILLS:
        train = {p for p, _ in skill_examples(skill, "train", 2000)}
        held = skill_examples(skill, "eval", 60)
        assert len(held) == 60 and not train & {p for p, _ in held}


def test_each_fine_tune_is_best_at_its_own_skill(demo_models):
    result, _ = run_job(evaluate(demo_models.paths, tasks=SKILLS, n=60))
    score = {(r.model, r.metric): r.value for r in result.rows}
    print(score)
    for skill, other in (("count", "reverse"), ("reverse", "count")):
        assert score[(skill, skill)] >= 0.8  # learned its skill on problems it never saw
        assert score[(skill, skill)] - score[("base", skill)] >= 0.6
        assert score[(skill, skill)] - score[(other, skill)] >= 0.6
        assert score[(skill, other)] <= 0.2  # and it is poor at the other one


def _direct_perplexity(path: Path, text: str, context: int) -> float:
    """The textbook computation: transformers' own mean loss per window, weighted by its targets."""
    model, tok = load_causal_lm(path)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), context):
            window = torch.tensor([ids[i:i + context]])
            if window.shape[1] < 2:
                continue
            nll += float(model(input_ids=window, labels=window).loss) * (window.shape[1] - 1)
            count += window.shape[1] - 1
    return math.exp(nll / count)


def test_perplexity_matches_transformers(demo_models, tmp_path, monkeypatch):
    import fusion_gui.engine.evaluate.scoring as ev

    monkeypatch.setattr(ev, "_BLOCK_CHARS", 40)  # many blocks: the streaming path is what is tested
    lines = [p + a for p, a in skill_examples("count", "eval", 30) + skill_examples("reverse", "eval", 30)]
    text = "\n".join(lines) + "\n"
    (tmp_path / "t.txt").write_text(text)
    for model in (demo_models.base, demo_models.count):
        row, events = run_job(perplexity(model, tmp_path / "t.txt", context=24, batch_size=3))
        progress = [e for e in events if isinstance(e, StepProgress)]
        assert len(progress) > 3 and progress[-1].fraction == 1.0
        assert row.n == len(text) - math.ceil(len(text) / 24)  # every token but each window's first
        assert row.value == pytest.approx(_direct_perplexity(model, text, 24), rel=1e-4)


def test_generation_is_greedy_and_seeded(demo_models):
    prompt, answer = skill_examples("reverse", "eval", 1)[0]
    first, _ = run_job(generate(demo_models.reverse, prompt, seed=3))
    again, _ = run_job(generate(demo_models.reverse, prompt, seed=3))
    assert [g.mode for g in first] == ["greedy", "sampled"]
    assert first == again  # the sampled completion repeats with its seed
    assert first[0].text == answer


def test_eval_cli_prints_the_table_and_writes_csv(demo_models, run_cli, tmp_path):
    (tmp_path / "t.txt").write_text("abcd<dcba 1234>2345 " * 20)
    code, out, err = run_cli("eval", demo_models.count, demo_models.reverse, "--task", "count",
                             "-n", "30", "--text", tmp_path / "t.txt", "--csv", tmp_path / "t.csv")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["model", "perplexity", "count", "(exact", "match)"]
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [r["model"] for r in rows] == ["count", "reverse"]
    assert float(rows[0]["count"]) > float(rows[1]["count"]) and rows[0]["count_n"] == "30"
    assert float(rows[0]["perplexity"]) > 1 and rows[0]["perplexity_n"] == str(400 - 7)
    # 400 tokens in windows of 64 (the demo model's longest context, below the default 256): 7 windows


def test_eval_cli_side_by_side_prompt(demo_models, run_cli):
    code, out, _ = run_cli("eval", demo_models.count, demo_models.reverse, "--prompt", "abc<")
    assert code == 0
    assert "[count, greedy] abc<" in out and "[reverse, sampled] abc<" in out
    assert "[reverse, greedy] abc<cba" in out


@pytest.mark.parametrize("args", [("{base}",), ("{base}", "--task", "sorting"), ("{base}", "--text", "/no/such.txt"),
                                  ("/no/such/model", "--task", "count"), ("{base}",) * 4 + ("--prompt", "ab")])
def test_eval_cli_bad_input_exits_2(demo_models, run_cli, args):
    code, _, err = run_cli("eval", *(a.format(base=demo_models.base) for a in args))
    assert code == 2
    message = err.strip().splitlines()[-1]
    assert message.startswith("error: ") and any(word in message for word in ("sorting", "such", "--text", "three"))


def test_demo_command_merges_and_the_merge_keeps_both_skills(demo_models, run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path))
    (tmp_path / "demo-models").symlink_to(demo_models.base.parent)  # reuse: no second build
    code, out, err = run_cli("demo")
    assert code == 0, err
    assert "Reusing the demo models" in err and (tmp_path / "demo-merge" / "config.json").exists()
    merged = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("demo-merge")}
    count, reverse = (int(v.rstrip("%")) for v in merged["demo-merge"])
    assert count >= 50 and reverse >= 40  # measured about 80 and 70: a good merge keeps much of both
