"""Merge search: in-memory candidates equal the written merge, settings round-trip, the loop's stops, resume
after a cancel and after a kill, two worker processes on one SQLite study, and every bad input's sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.evaluate.demo import DemoSpec, build_demo
from fusion_gui.engine.search import events as ev
from fusion_gui.engine.search.settings import (Objective, SearchSettings, Tuned, check_settings, load_settings,
                                               save_settings)
from helpers import ROOT, drain

TINY = DemoSpec(layers=2, hidden=32, pretrain_steps=12, finetune_steps=6, batch=8)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return drain(build_demo(tmp_path_factory.mktemp("demo") / "models", TINY))[0]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """A perplexity text in the demo's alphabet: scores differ from candidate to candidate (the tiny demo's
    skill scores are all zero)."""
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("".join(f"{i * 7919 % 100000}>{(i * 31) % 997}\nabcd<dcba\n" for i in range(60)))
    return path


def settings_for(demo, text: Path | None = None, **kw) -> SearchSettings:
    objectives = (Objective("perplexity", str(text)),) if text else (Objective("count"), Objective("reverse"))
    base = dict(method="task_arithmetic", base=str(demo.base), models=(str(demo.count), str(demo.reverse)),
                tune=(Tuned("weight", "model", 0.0, 1.5),), objectives=objectives, combine="mean", examples=6,
                held_out=6, trials=4, study_name="search")
    return SearchSettings(**{**base, **kw})


def run(settings, out, **kw):
    from fusion_gui.engine.search.loop import run_search

    return drain(run_search(settings, out, **kw))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# ---- in-memory candidates -----------------------------------------------------------------------

@pytest.mark.parametrize("method, granularity", [("task_arithmetic", 0), ("task_arithmetic", 1), ("dare_ties", 1)])
def test_an_in_memory_candidate_has_the_written_merge_s_weights(demo, tmp_path, method, granularity, one_torch_thread):
    from fusion_gui.engine.merge import MergeOptions, merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.engine.search.candidates import CandidateMerger
    from fusion_gui.engine.search.genome import dimensions, recipe_dict

    tune = [Tuned("weight", "layer" if granularity else "model", 0.1, 1.4)]
    if method == "dare_ties":
        tune.append(Tuned("density", "model", 0.3, 0.9))
    settings = settings_for(demo, method=method, tune=tuple(tune), layer_granularity=granularity, seed=7)
    merger = CandidateMerger(list(settings.models), settings.base, "cpu")
    try:
        dims = dimensions(settings, merger.n_layers)
        point = {d.name: d.low + (d.high - d.low) * (k + 1) / (len(dims) + 2) for k, d in enumerate(dims)}
        data = recipe_dict(settings, dims, point, merger.n_layers)
        assert ("slices" in data) == bool(granularity)
        model, _ = merger.load(data)
        in_memory = {k: v.clone() for k, v in model.state_dict().items()}
    finally:
        merger.close()
    drain(merge(recipe_from_dict(data), tmp_path / "written", MergeOptions(device="cpu", smoke=False)))
    written = {}
    for shard in (tmp_path / "written").glob("*.safetensors"):
        written.update(load_file(shard))
    assert set(written) <= set(in_memory)
    for name, tensor in written.items():
        assert torch.equal(in_memory[name], tensor), name
    base = load_file(next(Path(demo.base).glob("*.safetensors")))
    assert any(not torch.equal(base[n], written[n]) for n in written)  # the merge changed something


def test_each_trial_reads_no_input_again(demo, monkeypatch, one_torch_thread):
    from fusion_gui.engine.io.reader import ModelReader
    from fusion_gui.engine.search.candidates import CandidateMerger

    reads = []
    original = ModelReader.get
    monkeypatch.setattr(ModelReader, "get", lambda self, name: reads.append(name) or original(self, name))
    merger = CandidateMerger([str(demo.count), str(demo.reverse)], str(demo.base), "cpu")
    try:
        recipe = {"merge_method": "task_arithmetic", "base_model": str(demo.base), "dtype": "float32",
                  "models": [{"model": str(m), "parameters": {"weight": w}} for m, w in ((demo.count, 0.5),
                                                                                         (demo.reverse, 0.7))]}
        merger.load(recipe)
        first = len(reads)
        recipe["models"][0]["parameters"]["weight"] = 0.9
        merger.load(recipe)
    finally:
        merger.close()
    assert first > 0 and len(reads) == first


# ---- settings ----------------------------------------------------------------------------------------

def test_settings_round_trip_through_yaml(demo, tmp_path, text):
    settings = settings_for(demo, text, tune=(Tuned("weight", "layer", 0.0, 2.0, 0.8),
                                              Tuned("lambda", "global", 0.5, 1.5)),
                            layer_granularity=1, seconds=60.0, sampler="tpe", storage="sqlite:///x.sqlite")
    save_settings(settings, tmp_path / "s.yml")
    assert load_settings(tmp_path / "s.yml") == settings


def test_grid_order_is_coarse_first():
    from fusion_gui.engine.search.genome import Dimension, grid_points

    points = grid_points([Dimension("w", "weight", 0.0, 1.0)], 5)
    assert [p["w"] for p in points] == [0.0, 1.0, 0.5, 0.25, 0.75]
    square = grid_points([Dimension("a", "weight", 0.0, 1.0), Dimension("b", "weight", 0.0, 1.0)], 3)
    assert len(square) == 9 and len({tuple(p.values()) for p in square}) == 9
    assert {tuple(p.values()) for p in square[:4]} == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)}


# ---- the loop ----------------------------------------------------------------------------------------

def test_a_search_finds_the_best_trial_and_exports_it(demo, tmp_path, text, one_torch_thread):
    result, events = run(settings_for(demo, text, trials=5), tmp_path / "out")
    started = of(events, ev.SearchStarted)[0]
    assert started.dimensions == ("weight/count", "weight/reverse") and started.objectives == ("perplexity",)
    assert started.maximize == (False,) and not started.pareto
    finished = of(events, ev.TrialFinished)
    assert [e.number for e in finished] == [0, 1, 2, 3, 4] and all(e.state == "complete" for e in finished)
    best = min(finished, key=lambda e: e.scores["perplexity"])
    assert result.best[0].number == best.number and of(events, ev.BestSoFar)[-1].number == best.number
    assert result.stopped.reason == "budget"
    assert set(result.best[0].held_out) == {"perplexity"}
    assert result.best[0].held_out["perplexity"] != result.best[0].search["perplexity"]  # other text
    from fusion_gui.engine.merge.recipe import load_recipe, recipe_from_dict, recipe_to_dict
    from fusion_gui.engine.search.genome import recipe_for

    picked = recipe_from_dict(recipe_for(settings_for(demo, text), best.params))  # as the app opens a clicked trial
    assert recipe_to_dict(load_recipe(result.recipe_file)) == recipe_to_dict(picked)
    recipe = Path(result.recipe_file).read_text()
    assert f"{best.params['weight/count']}" in recipe and "task_arithmetic" in recipe
    assert len(Path(result.trials_csv).read_text().splitlines()) == 6


def test_a_search_starts_from_the_given_recipe(demo, tmp_path, text, one_torch_thread):
    settings = settings_for(demo, text, tune=(Tuned("weight", "layer", 0.0, 2.0, 0.8),), layer_granularity=1, trials=2)
    _, events = run(settings, tmp_path / "out")
    started = of(events, ev.TrialStarted)
    assert started[0].params == {"weight/count/g0": 0.8, "weight/count/g1": 0.8, "weight/reverse/g0": 0.8,
                                 "weight/reverse/g1": 0.8}
    assert started[1].params != started[0].params


def test_a_grid_runs_every_point_once_then_stops(demo, tmp_path, text, one_torch_thread):
    settings = settings_for(demo, text, tune=(Tuned("lambda", "global", 0.5, 1.5),),
                            fixed={"weight": 0.8}, sampler="grid", grid_steps=3, trials=None)
    result, events = run(settings, tmp_path / "grid")
    assert [e.params["lambda"] for e in of(events, ev.TrialStarted)] == [0.5, 1.5, 1.0]
    assert result.stopped.reason == "grid done"


def test_two_objectives_give_a_pareto_front(demo, tmp_path, text, one_torch_thread):
    settings = settings_for(demo, text, trials=4)
    settings = replace(settings, objectives=(Objective("perplexity", str(text)), Objective("count")),
                       combine="pareto")
    result, events = run(settings, tmp_path / "pareto")
    front = of(events, ev.ParetoFront)[-1]
    assert front.numbers and set(front.scores[0]) == {"perplexity", "count"}
    assert {b.number for b in result.best} == set(front.numbers)


def test_task_files_are_objectives_with_held_out_lines(demo, tmp_path, one_torch_thread):
    import json

    gen, choice = tmp_path / "digits.jsonl", tmp_path / "pick.jsonl"
    gen.write_text("".join(json.dumps({"prompt": f"{i}>", "answer": str(i + 1)}) + "\n" for i in range(10)))
    choice.write_text("".join(json.dumps({"query": f"{i}>", "choices": ["a", "b", "c"], "answer": i % 3}) + "\n"
                              for i in range(10)))
    settings = settings_for(demo, trials=2, combine="pareto", sampler="nsga2",
                            objectives=(Objective(str(gen)), Objective(str(choice), metric="acc")))
    result, events = run(settings, tmp_path / "out")
    assert set(of(events, ev.TrialFinished)[0].scores) == {"digits", "pick/acc"}
    data = tmp_path / "out" / "data"
    # every fifth line held out; the search part capped at `examples` (6 of 8)
    assert (data / "digits-held_out.jsonl").read_text().splitlines() == gen.read_text().splitlines()[4::5]
    assert len((data / "digits-search.jsonl").read_text().splitlines()) == settings.examples == 6
    assert set(result.best[0].held_out) == {"digits", "pick/acc"}


def test_history_gets_a_search_record(demo, tmp_path, text, one_torch_thread):
    from fusion_gui.session.history import History
    from fusion_gui.session.search_record import record_search

    history = History(tmp_path / "history.sqlite")
    settings = settings_for(demo, text, trials=2)
    result, _ = run(settings, tmp_path / "out")
    record = history.get(record_search(history, settings, result))
    assert record.kind == "search" and record.status == "done" and "task_arithmetic" in record.recipe
    assert record.recipe == Path(result.recipe_file).read_text()
    assert {(s.task, s.metric) for s in record.scores} == {("perplexity", "search"), ("perplexity", "held_out")}


# ---- stopping and resuming ---------------------------------------------------------------------------

def test_cancel_presents_nothing_and_resume_continues_the_study(demo, tmp_path, text, one_torch_thread):
    from fusion_gui.engine.search.loop import run_search

    cancel, out = CancelToken(), tmp_path / "out"
    gen = run_search(settings_for(demo, text, trials=4), out, cancel)
    events = []
    for event in gen:
        events.append(event)
        if isinstance(event, ev.TrialStarted) and event.number == 1:
            cancel.cancel()
    finished = of(events, ev.TrialFinished)
    assert [(e.number, e.state) for e in finished] == [(0, "complete"), (1, "failed")]
    assert of(events, ev.SearchStopped)[-1].reason == "cancelled"
    assert not (out / "best-recipe.yml").exists()
    result, events = run(settings_for(demo, text, trials=4), out, mode="resume")
    assert [e.number for e in of(events, ev.TrialFinished)] == [2, 3]  # the failed trial counts in the budget
    assert result.trials == 3 and 1 not in {b.number for b in result.best}
    assert (out / "best-recipe.yml").exists()


def test_closing_the_generator_mid_trial_leaves_no_trial_running(demo, tmp_path, text, one_torch_thread):
    from fusion_gui.engine.search.loop import run_search
    from fusion_gui.engine.search.study import list_trials, storage_url

    settings = settings_for(demo, text, trials=3)
    gen = run_search(settings, tmp_path / "out")
    assert any(isinstance(event, ev.TrialStarted) for event in gen)  # stops at the first trial's start
    gen.close()  # what Ctrl-C does in the CLI
    [row] = list_trials(storage_url(settings, tmp_path / "out"))
    assert (row.state, row.error) == ("failed", "cancelled")


def test_a_trial_left_running_by_a_killed_process_is_failed_on_resume(demo, tmp_path, text, one_torch_thread):
    import socket

    from fusion_gui.engine.search.study import list_trials, storage_url
    import optuna

    settings, out = settings_for(demo, text, trials=3), tmp_path / "out"
    pause = CancelToken()
    pause.cancel()  # creates the study, runs nothing
    run(settings, out, pause=pause)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name="search", storage=storage_url(settings, out))
    orphan = study.ask()
    orphan.suggest_float("weight/count", 0.0, 1.5)
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    result, events = run(settings, out, mode="resume")
    assert any("left unfinished" in e.message for e in events if hasattr(e, "message"))
    rows = {r.number: r for r in list_trials(storage_url(settings, out))}
    assert rows[orphan.number].state == "failed" and "process ended" in rows[orphan.number].error
    assert orphan.number not in {b.number for b in result.best}
    assert result.trials == 2


def test_three_failed_trials_in_a_row_stop_the_search_and_say_why(demo, tmp_path, text, monkeypatch, one_torch_thread):
    from fusion_gui.engine.search.objectives import Objectives

    def broken(*args, **kwargs):
        raise RuntimeError("the scorer broke")

    monkeypatch.setattr(Objectives, "score", broken)
    result, events = run(settings_for(demo, text, trials=10), tmp_path / "out")
    assert [e.state for e in of(events, ev.TrialFinished)] == ["failed"] * 3
    assert result.stopped.reason == "failures" and "3 trials in a row failed" in result.stopped.message
    assert "the scorer broke" in result.stopped.message
    assert result.recipe_file is None and not (tmp_path / "out" / "best-recipe.yml").exists()


def test_a_new_search_refuses_a_folder_that_holds_one(demo, tmp_path, text, one_torch_thread):
    run(settings_for(demo, text, trials=1), tmp_path / "out")
    with pytest.raises(InputError, match="resume it with --resume"):
        run(settings_for(demo, text, trials=1), tmp_path / "out")


# ---- bad input: one sentence each --------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    ({"objectives": (Objective("spelling"),)}, "is no task"),
    ({"objectives": (Objective("perplexity", "/no/such/text.txt"),)}, "does not exist"),
    ({"objectives": (Objective("perplexity"),)}, "needs a text file"),
    ({"objectives": (Objective("/no/such/qa.jsonl"),)}, "does not exist"),
    ({"tune": (Tuned("lambda", "global", 5.0, 9.0),)}, "leave no valid value"),
    ({"tune": (Tuned("weight", "model", 1.0, 1.0),)}, "leave no valid value"),
    ({"method": "model_stock"}, "no numeric parameters to tune"),
    ({"tune": (Tuned("temperature", "model", 0.0, 1.0),)}, "no numeric parameter 'temperature'"),
    ({"tune": (Tuned("weight", "layer", 0.0, 1.0),)}, "set layer_granularity"),
    ({"combine": "pareto", "sampler": "cmaes"}, "CMA-ES optimizes one value"),
    ({"trials": None}, "budget"),
    ({"tune": (Tuned("weight", "model", 0.0, 1.0, 1.5),)}, "outside its bounds"),
])
def test_bad_settings_are_one_sentence(demo, change, words):
    with pytest.raises(InputError, match=words) as err:
        check_settings(settings_for(demo, **change))
    assert "\n" not in str(err.value)


def test_bad_settings_files_are_one_sentence(tmp_path):
    from fusion_gui.engine.search.settings import load_settings

    for text, words in [("method: linear\n", "needs 'models'"),
                        ("method: linear\nmodels: [a]\ntune: [{name: weight}]\nobjectives: [count]\nspeed: 3\n",
                         "unknown key 'speed'"),
                        ("[1, 2", "not valid YAML")]:
        (tmp_path / "s.yml").write_text(text)
        with pytest.raises(InputError, match=words):
            load_settings(tmp_path / "s.yml")


def test_inputs_that_do_not_fit_in_memory_are_one_sentence(demo, monkeypatch):
    import psutil

    from fusion_gui.engine.search.candidates import CandidateMerger

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": 1000})())
    with pytest.raises(InputError, match="holds its 3 inputs and one merged model in memory"):
        CandidateMerger([str(demo.count), str(demo.reverse)], str(demo.base), "cpu")


def test_resuming_with_other_settings_says_which_differ(demo, tmp_path, text, one_torch_thread):
    pause = CancelToken()
    pause.cancel()
    run(settings_for(demo, text), tmp_path / "out", pause=pause)
    changed = settings_for(demo, text, tune=(Tuned("weight", "model", 0.0, 1.0),), trials=9)
    with pytest.raises(InputError, match=r"differ from the stored search's \(tune\)"):
        run(changed, tmp_path / "out", mode="resume")
    run(settings_for(demo, text, trials=1), tmp_path / "out", mode="resume")  # a new budget is fine


def test_resuming_a_search_that_was_never_started_says_so(demo, tmp_path, text):
    with pytest.raises(InputError, match="no search"):
        run(settings_for(demo, text), tmp_path / "nothing", mode="resume")


# ---- several processes, one study ------------------------------------------------------------------

@pytest.mark.slow  # two fresh processes that each import torch and transformers
def test_two_worker_processes_share_one_sqlite_study(demo, tmp_path, text, one_torch_thread):
    from fusion_gui.engine.search.study import list_trials, storage_url

    out = tmp_path / "shared"
    settings = settings_for(demo, text, trials=8)
    save_settings(settings, tmp_path / "search.yml")
    pause = CancelToken()
    pause.cancel()
    run(settings, out, pause=pause)  # the study exists; the workers join it
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fusion_gui", "search", "--worker", str(tmp_path / "search.yml"), str(out)]
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    rows = list_trials(storage_url(settings, out))
    numbers = [r.number for r in rows]
    assert len(numbers) == len(set(numbers)) and len(rows) >= 8
    assert len({r.worker for r in rows if r.state == "complete"}) == 2, [(r.number, r.worker) for r in rows]
    result, _ = run(settings, out, mode="resume")  # the budget is spent: re-score and export
    complete = [r for r in rows if r.state == "complete"]
    assert result.best[0].number == min(complete, key=lambda r: r.scores["perplexity"]).number
    assert Path(result.recipe_file).is_file()


def test_the_cli_writes_the_best_recipe_and_merges_it(demo, tmp_path, text, run_cli, one_torch_thread):
    save_settings(settings_for(demo, text, trials=2), tmp_path / "search.yml")
    code, out, err = run_cli("search", tmp_path / "search.yml", tmp_path / "out", "--merge")
    assert code == 0, err
    from fusion_gui.session.history import History

    assert History().runs(kind="search")[0].output == str(tmp_path / "out")
    assert "trial 0: perplexity" in err and "Best recipe:" in out
    code, listed, _ = run_cli("history", "list", "--kind", "search")
    assert code == 0 and "task_arithmetic search: 2 trials" in listed
    assert (tmp_path / "out" / "best-model" / "config.json").is_file()
    code, _, err = run_cli("search", tmp_path / "search.yml", tmp_path / "out2", "--worker")
    assert code == 2 and "no search" in err
