"""History: recording and reading runs, search and sort, the score cache, content hashes, a damaged
or newer database file, export."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from fusion_gui.engine.errors import Cancelled
from fusion_gui.events import EvalRow
from fusion_gui.session.eval_cache import evaluate_cached
from fusion_gui.session.history import SCHEMA_VERSION, History, InputFile, Score, data_dir
from fusion_gui.session.history_export import export_runs
from helpers import drain


@pytest.fixture
def history(tmp_path):
    h = History(tmp_path / "h.sqlite")
    yield h
    h.close()


def test_runs_round_trip_search_and_sort_by_a_score(history):
    a = history.record("merge", title="slerp of a and b", recipe="merge_method: slerp", output="/out/ab",
                       inputs=[InputFile("/models/a", "base", "h1")], seconds=3.5, peak_bytes=10, verdict="ok",
                       details={"layers": [{"layer": 0, "result_change": 0.1}]})
    b = history.record("eval", title="eval",
                       scores=[Score("m1", "arc", "acc", 0.4, 100), Score("m2", "arc", "acc", 0.7, 100)])
    c = history.record("eval", title="eval 2", scores=[Score("m3", "arc", "acc", 0.5, 100)])
    run = history.get(a)
    assert (run.kind, run.recipe, run.inputs[0].content_hash, run.verdict, run.peak_bytes) == (
        "merge", "merge_method: slerp", "h1", "ok", 10)
    assert run.details["layers"][0]["result_change"] == 0.1
    assert [r.id for r in history.runs(search="models/a")] == [a]
    assert [r.id for r in history.runs(kind="eval")] == [c, b]  # newest first
    assert [r.id for r in history.runs(sort_by="arc/acc")] == [b, c, a]  # best first, no score last
    assert [r.id for r in history.runs(sort_by="acc", limit=1)] == [b]


def test_a_damaged_file_is_moved_aside_with_a_message(tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    history = History(path)
    assert history.notice and "damaged" in history.notice
    assert history.record("merge", title="after") == 1
    aside = list(tmp_path.glob("h.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    history.close()
    assert History(path).notice is None  # the new file is fine next time


def test_a_newer_schema_is_left_alone_and_runs_still_record(tmp_path):
    path = tmp_path / "h.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    history = History(path)
    assert "newer" in history.notice and history.record("eval") == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_score_cache_answers_an_unchanged_model_and_a_cancel_caches_nothing(history, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "README.md").write_text("card")
    calls = []

    def job(cancel_after=None):
        def run():
            calls.append(1)
            yield EvalRow("m", "t/acc", 0.5, 10)
            if cancel_after:
                raise Cancelled("Cancelled by the user.")
            return (EvalRow("m", "t/acc", 0.5, 10),)
        return run

    with pytest.raises(Cancelled):
        drain(evaluate_cached(history, model, "task1", job(cancel_after=True), "m"))
    assert history.cached_scores(history.model_hash(model), "task1") is None
    first, _ = drain(evaluate_cached(history, model, "task1", job(), "m"))
    again, _ = drain(evaluate_cached(history, model, "task1", job(), "m"))
    assert first == again and len(calls) == 2  # the third call came from the cache
    (model / "README.md").write_text("a new card")  # does not change a score
    drain(evaluate_cached(history, model, "task1", job(), "m"))
    assert len(calls) == 2
    (model / "model.safetensors").write_bytes(b"other weights")
    drain(evaluate_cached(history, model, "task1", job(), "m"))
    assert len(calls) == 3


def test_file_hash_is_the_full_sha256_cached_until_the_file_changes(history, tmp_path):
    import hashlib
    import os

    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    assert history.file_hash(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    f.write_bytes(b"a" * 999 + b"b")
    os.utime(f, ns=(1, 1))  # even with an old mtime, a new size means a new hash
    assert history.file_hash(f) == hashlib.sha256(b"a" * 999 + b"b").hexdigest()


def test_export_csv_and_json(history, tmp_path):
    history.record("eval", title="e", scores=[Score("m", "arc", "acc", 0.25, 4)])
    history.record("merge", title="m")
    rows = list(csv.DictReader(open(export_runs(history.runs(), tmp_path / "h.csv"))))
    assert [(r["kind"], r["metric"], r["value"]) for r in rows] == [("merge", "", ""), ("eval", "acc", "0.25")]
    data = json.loads(export_runs(history.runs(), tmp_path / "h.json").read_text())
    assert data[1]["scores"][0]["value"] == 0.25


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSION_GUI_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    assert History().path == tmp_path / "d" / "history.sqlite"


def test_a_merge_is_recorded_with_input_hashes_and_layer_metrics(history, llama_family, tmp_path):
    from fusion_gui.engine.merge.recipe import load_recipe
    from fusion_gui.engine.merge.run import MergeOptions, merge
    from fusion_gui.session.run_records import record_merge

    base, ft1, _ = llama_family
    text = f"merge_method: task_arithmetic\nbase_model: {base}\nmodels:\n- model: {ft1}\n  parameters: {{weight: 1}}\n"
    result, _ = drain(merge(load_recipe(text), tmp_path / "out", MergeOptions(device="cpu", smoke=False)))
    run = history.get(record_merge(history, text, [str(base), str(ft1)], str(base), result.out_dir, result))
    assert [(i.role, i.content_hash) for i in run.inputs] == [("base", history.model_hash(base)),
                                                              ("input", history.model_hash(ft1))]
    assert len(run.details["layer_metrics"]) == len(result.layer_metrics) > 0
    assert run.details["layer_metrics"][0]["result_change"] == pytest.approx(result.layer_metrics[0].result_change)
    assert run.peak_bytes == result.peak_bytes and run.recipe == text
