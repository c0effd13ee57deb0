"""`fusion-gui eval` with task files and lm-eval tasks, the score cache, and `fusion-gui history`."""

from __future__ import annotations

import csv
import json

import pytest

from eval_task_data import write_choice_task, write_generation_task, write_lm_eval_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def own_history(tmp_path):
    """A history per test (its own MonkeyPatch: run_cli undoes the shared one after every command)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path / "data"))
        yield


def test_eval_task_files_then_the_cache_then_history(llama_family, run_cli, tmp_path):
    base, ft1, _ = llama_family
    mc = write_choice_task(tmp_path / "mc.jsonl")
    gen = write_generation_task(tmp_path / "gen.jsonl", [("1+1=", "2"), ("a", "b")])
    args = ("eval", base, ft1, "--task", mc, "--task", gen, "--max-new-tokens", "4", "--csv", tmp_path / "s.csv")
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "mc/acc" in out and "mc/acc_norm" in out and "gen/exact_match" in out
    table = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["model"] for r in table] == ["llama-base", "llama-ft1"] and table[0]["mc/acc_n"] == "12"
    code, again, err = run_cli(*args)
    assert code == 0 and again == out and err.count("scores from the history") == 4
    code, out, _ = run_cli("history", "list", "--kind", "eval", "--sort", "mc/acc")
    assert code == 0 and len(out.strip().splitlines()) == 3  # header and two runs
    code, out, _ = run_cli("history", "show", "1")
    assert "score: llama-base mc/acc" in out and "sha256" in out
    code, out, _ = run_cli("history", "export", tmp_path / "h.json")
    runs = json.loads((tmp_path / "h.json").read_text())
    assert len(runs) == 2 and len(runs[0]["scores"]) == 2 * 3
    assert runs[0]["inputs"][0]["content_hash"] == runs[1]["inputs"][0]["content_hash"] != ""


def test_eval_an_lm_eval_task_from_a_local_folder(llama_family, run_cli, tmp_path):
    pytest.importorskip("lm_eval")
    data = write_choice_task(tmp_path / "mc.jsonl")
    folder = write_lm_eval_task(tmp_path / "tasks", data)
    code, out, err = run_cli("eval", llama_family[0], "--task", "lm-eval:local_mc", "--include-path", folder)
    assert code == 0, err
    assert "local_mc/acc" in out and "local_mc/acc_norm" in out


def test_eval_bad_input_exits_2_with_one_sentence(llama_family, run_cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "choices": ["a", "b"], "answer": 0}\n{"query": "q"\n')
    code, _, err = run_cli("eval", llama_family[0], "--task", bad)
    assert code == 2 and "line 2" in err
    code, _, err = run_cli("eval", llama_family[0], "--task", write_choice_task(tmp_path / "mc.jsonl"),
                           "--chat-template")
    assert code == 2 and "no chat template" in err
    code, out, _ = run_cli("history", "list")
    assert "failed" in out  # the refused evaluation is recorded as failed


def test_merge_is_recorded_and_can_skip_the_smoke_check(llama_family, run_cli, tmp_path):
    base, ft1, _ = llama_family
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"merge_method: linear\nmodels:\n- model: {base}\n  parameters: {{weight: 0.5}}\n"
                      f"- model: {ft1}\n  parameters: {{weight: 0.5}}\n")
    code, _, err = run_cli("merge", recipe, tmp_path / "out", "--no-smoke", "--device", "cpu")
    assert code == 0, err
    assert "Smoke check" not in err
    code, _, err = run_cli("merge", recipe, tmp_path / "out2", "--device", "cpu")
    assert code == 0 and "Smoke check: " in err
    code, out, _ = run_cli("history", "list", "--kind", "merge")
    lines = out.strip().splitlines()
    assert len(lines) == 3 and "out2" in lines[1] and "out" in lines[2]
    code, out, _ = run_cli("history", "show", "2")
    assert "smoke perplexity" in out and "merge_method: linear" in out


def test_eval_writes_scores_into_the_model_card(llama_family, run_cli, tmp_path):
    import shutil

    import yaml

    model = shutil.copytree(llama_family[0], tmp_path / "model")
    (model / "README.md").write_text("---\ntags:\n- merge\n---\n\n# model\n")
    code, out, err = run_cli("eval", model, "--task", write_choice_task(tmp_path / "mc.jsonl"), "--write-card")
    assert code == 0, err
    front = yaml.safe_load((model / "README.md").read_text().split("---")[1])
    metrics = {m["type"] for r in front["model-index"][0]["results"] for m in r["metrics"]}
    assert metrics == {"acc", "acc_norm"} and front["tags"] == ["merge"]
