"""Task files without a harness, and lm-eval through its Python API on a local custom task."""

from __future__ import annotations

import json

import pytest

from eval_task_data import write_choice_task, write_generation_task, write_lm_eval_task
from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError
from fusion_gui.engine.evaluate.scoring import load_causal_lm
from fusion_gui.engine.evaluate.task_files import TaskSettings, task_hash
from fusion_gui.engine.evaluate.tasks import extract, load_task, run_task
from helpers import drain

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded(llama_family):
    return load_causal_lm(llama_family[0])


def test_multiple_choice_matches_lm_eval_loglikelihoods_and_scores(loaded, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from fusion_gui.engine.evaluate.harness import _cancellable_lm, run_harness

    model, tokenizer = loaded
    data = write_choice_task(tmp_path / "mc.jsonl")
    ours, _ = drain(run_task(model, tokenizer, load_task(data), label="m", batch_size=5))
    theirs, _ = drain(run_harness(model, tokenizer, ["local_mc"], label="m", builtin=False,
                                  include_path=write_lm_eval_task(tmp_path / "tasks", data)))
    assert {r.metric.split("/")[1]: r.value for r in ours} == {r.metric.split("/")[1]: r.value for r in theirs}
    assert {r.metric for r in theirs} == {"local_mc/acc", "local_mc/acc_norm"} and theirs[0].n == 12
    # the per-choice numbers themselves, not only the argmax
    from fusion_gui.engine.evaluate.loglikelihood import encode_pair, loglikelihoods

    pairs = [("Question: which word is red?\nAnswer:", " red"), ("A", " longer continuation here")]
    hf = _cancellable_lm(model, tokenizer, 2, None)
    want = [ll for ll, _ in hf.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])]
    got = dict(sum((b for _, b in loglikelihoods(model, [encode_pair(tokenizer, *p) for p in pairs])), []))
    assert [got[0], got[1]] == pytest.approx(want, rel=1e-4)
    assert lm_eval is not None


def test_a_task_whose_data_is_not_local_says_what_and_where(loaded, tmp_path):
    pytest.importorskip("lm_eval")
    from fusion_gui.engine.evaluate.harness import run_harness

    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "hub_task.yaml").write_text(
        "task: hub_task\ndataset_path: fusion-gui-tests/no-such-dataset\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: c\ndoc_to_target: 0\n")
    with pytest.raises(InputError, match="huggingface.co/datasets/fusion-gui-tests/no-such-dataset"):
        drain(run_harness(*loaded, ["hub_task"], label="m", include_path=folder, builtin=False))
    write_lm_eval_task(folder, tmp_path / "missing.jsonl", name="file_task")
    with pytest.raises(InputError, match="missing.jsonl"):
        drain(run_harness(*loaded, ["file_task"], label="m", include_path=folder, builtin=False))


def test_generation_exact_match_with_regex_and_batches_agree(loaded, tmp_path):
    model, tokenizer = loaded
    data = write_generation_task(tmp_path / "gen.jsonl", [("1+1=", "2"), ("say hi:", "hi"), ("x", "y")] * 3)
    settings = TaskSettings(max_new_tokens=6, regex=r"(\w)")
    one, _ = drain(run_task(model, tokenizer, load_task(data, settings), label="m", batch_size=1))
    many, events = drain(run_task(model, tokenizer, load_task(data, settings), label="m", batch_size=4))
    assert one[0].metric == "gen/exact_match" and one[0].n == 9 and one == many
    assert extract("The answer is 42.\n\nMore", TaskSettings(regex=r"answer is (\d+)")) == "42"
    assert extract(" yes \n\nno", TaskSettings()) == "yes"


def test_bad_lines_are_named_and_settings_change_the_hash(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = json.dumps({"query": "q", "choices": ["a", "b"], "answer": 0})
    for line, message in [("{not json", "line 2 is not valid JSON"),
                          (json.dumps({"query": "q", "choices": ["a"], "answer": 0}), "line 2: 'choices'"),
                          (json.dumps({"query": "q", "choices": ["a", "b"], "answer": 5}), "line 2: the answer"),
                          (json.dumps({"prompt": "p", "answer": "a"}), "line 2 mixes")]:
        bad.write_text(good + "\n" + line + "\n")
        with pytest.raises(InputError, match=message):
            load_task(bad)
    with pytest.raises(InputError, match="not a valid pattern"):
        load_task(write_choice_task(tmp_path / "ok.jsonl"), TaskSettings(regex="("))
    task = load_task(tmp_path / "ok.jsonl")
    assert task.kind == "choice"
    assert task_hash(task) != task_hash(load_task(tmp_path / "ok.jsonl", TaskSettings(chat_template=True)))
    assert task_hash(task) == task_hash(load_task(tmp_path / "ok.jsonl"))


def test_chat_template_switch_refuses_without_a_template_and_cancel_stops(loaded, tmp_path):
    model, tokenizer = loaded
    task = load_task(write_choice_task(tmp_path / "mc.jsonl"), TaskSettings(chat_template=True))
    with pytest.raises(InputError, match="no chat template"):
        drain(run_task(model, tokenizer, task, label="m"))
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        drain(run_task(model, tokenizer, load_task(tmp_path / "mc.jsonl"), label="m", cancel=cancel))


def test_confidence_interval_is_wilsons_and_none_for_perplexity():
    from fusion_gui.engine.evaluate.report import confidence_interval
    from fusion_gui.events import EvalRow

    assert confidence_interval(EvalRow("m", "t/acc", 0.5, 100)) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = confidence_interval(EvalRow("m", "t/acc", 1.0, 10))
    assert high == 1.0 and 0.65 < low < 0.75  # never a zero-width interval at 100%
    assert confidence_interval(EvalRow("m", "t/perplexity", 3.0, 100)) is None
