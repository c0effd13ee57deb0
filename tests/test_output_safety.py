"""The output folder: its model card, never an input, and partial folders a killed job leaves behind."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from fusion_gui.engine.io.partial import GONE, OWNER_FILE, RUNNING, find_partials
from fusion_gui.engine.merge import MergeOptions, merge
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.events import Log
from tests.helpers import drain

REPO = Path(__file__).resolve().parents[1]


def _linear(*models) -> dict:
    return {"merge_method": "linear", "models": [{"model": str(m), "parameters": {"weight": 1.0}} for m in models]}


def _hub_copy(model: Path, tmp_path: Path, monkeypatch) -> str:
    """`model` as the repo id org/base in a Hugging Face cache."""
    cache, commit = tmp_path / "hub", "89abcdef0123456789abcdef0123456789abcdef"
    shutil.copytree(model, cache / "models--org--base" / "snapshots" / commit)
    (cache / "models--org--base" / "refs").mkdir()
    (cache / "models--org--base" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return "org/base"


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---")[1])


def test_model_card_is_titled_with_the_output_and_lists_hub_models_by_repo_id(
        llama_family, tmp_path, monkeypatch, one_torch_thread):
    base, a, b = llama_family
    recipe = recipe_from_dict({"merge_method": "task_arithmetic", "base_model": _hub_copy(base, tmp_path, monkeypatch),
                               "models": [{"model": str(a), "parameters": {"weight": 0.5}},
                                          {"model": str(b), "parameters": {"weight": 0.5}}]})
    drain(merge(recipe, tmp_path / "my-merge", MergeOptions(device="cpu")))
    card = (tmp_path / "my-merge" / "README.md").read_text()
    lines = card.splitlines()
    assert next(line for line in lines if line.startswith("# ")) == "# my-merge"
    assert ".partial-" not in card
    front = _front_matter(card)
    assert front["base_model"] == ["org/base"]  # the Hub resolves a repo id; a local folder it cannot
    assert front["library_name"] == "transformers" and "task_arithmetic" in front["tags"]
    assert f"- {a}" in lines and f"- {b}" in lines and "- org/base (base)" in lines  # local folders in the body
    assert "## Use it" in card
    assert 'AutoModelForCausalLM.from_pretrained("my-merge")' in card
    assert 'AutoTokenizer.from_pretrained("my-merge")' in card


def test_model_card_of_local_models_has_no_base_model_and_takes_the_recipe_name(llama_family, tmp_path,
                                                                               one_torch_thread):
    _, a, b = llama_family
    recipe = recipe_from_dict({**_linear(a, b), "name": "Soup of two"})
    drain(merge(recipe, tmp_path / "soup", MergeOptions(device="cpu")))
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "# Soup of two" in card.splitlines()
    assert "base_model" not in _front_matter(card)
    assert 'from_pretrained("soup")' in card


# --- OUT_DIR must never be an input ---------------------------------------------------------------

@pytest.mark.parametrize("where", ["is", "inside", "contains"])
def test_out_dir_that_is_contains_or_lies_inside_an_input_is_refused_even_with_force(
        llama_family, tmp_path, run_cli, where):
    _, a, b = llama_family
    holder = tmp_path / "holder"
    mine = shutil.copytree(a, holder / "a")  # never the shared fixture: a failing test would destroy it
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    out = {"is": mine, "inside": mine / "merged", "contains": holder}[where]
    recipe = tmp_path / "r.yml"
    recipe.write_text(yaml.safe_dump(_linear(mine, b)))
    for extra in ((), ("--dry-run",)):
        code, _, err = run_cli("merge", recipe, out, "--force", "--no-progress", *extra)
        assert code == 2, err
        message = err.strip().removeprefix("error: ")
        assert "\n" not in message and message.count(". ") == 0, message  # one sentence
        assert str(mine) in message and "choose another output folder" in message
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
    assert not list(holder.glob(".*partial*")) and not list(mine.glob(".*partial*"))


# --- partial folders of killed jobs ---------------------------------------------------------------

_GATED_MERGE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fusion_gui.engine.io import writer

    write_bytes = writer.ShardedWriter._write_bytes

    def gated(self, *args):  # one tensor on disk, then wait to be killed
        write_bytes(self, *args)
        Path(sys.argv[3]).touch()
        time.sleep(3600)

    writer.ShardedWriter._write_bytes = gated
    from fusion_gui.cli import main
    sys.exit(main(["merge", sys.argv[1], sys.argv[2], "--no-progress", "--device", "cpu"]))
""")


def _start_gated_merge(tmp_path: Path, recipe: Path, out: Path) -> subprocess.Popen:
    script, ready = tmp_path / "gated_merge.py", tmp_path / f"{out.name}.ready"
    script.write_text(_GATED_MERGE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(recipe), str(out), str(ready)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300  # a guard against a hang, not a speed check
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the gated merge exited early: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the gated merge never wrote a tensor")
        time.sleep(0.1)
    return proc


def test_killed_merge_partial_is_removed_by_the_next_merge_and_a_live_one_is_kept(
        llama_family, tmp_path, run_cli, one_torch_thread):
    _, a, b = llama_family
    recipe = tmp_path / "r.yml"
    recipe.write_text(yaml.safe_dump(_linear(a, b)))
    parent = tmp_path / "outs"
    parent.mkdir()
    live = _start_gated_merge(tmp_path, recipe, parent / "second")
    try:
        killed = _start_gated_merge(tmp_path, recipe, parent / "first")  # it leaves the live one's folder alone
        os.kill(killed.pid, signal.SIGKILL)  # a real kill -9: no cleanup code runs
        killed.wait()
        found = {Path(p.path).name.split(".partial-")[0]: p for p in find_partials(parent)}
        assert set(found) == {".first", ".second"}
        assert found[".first"].state == GONE and found[".first"].pid == killed.pid
        assert found[".second"].state == RUNNING and found[".second"].pid == live.pid
        assert found[".first"].kind == "merge" and found[".first"].bytes > 0
        assert (Path(found[".first"].path) / OWNER_FILE).is_file()

        code, out, err = run_cli("merge", recipe, parent / "third", "--dry-run")
        assert code == 0, err
        assert f"partial folder: {found['.first'].path}" in out and "no longer runs" in out
        assert f"partial folder: {found['.second'].path}" in out and "still running" in out
        assert Path(found[".first"].path).exists()  # the dry run writes and deletes nothing

        result, events = drain(merge(recipe_from_dict(_linear(a, b)), parent / "third", MergeOptions(device="cpu")))
        assert not Path(found[".first"].path).exists()
        assert Path(found[".second"].path).exists()  # its owner still runs
        assert any(isinstance(e, Log) and "Removed the partial folder" in e.message and found[".first"].path
                   in e.message for e in events)
        assert not (parent / "third" / OWNER_FILE).exists()  # the published output carries no record
        assert sorted(p.name for p in parent.iterdir() if not p.name.startswith(".")) == ["third"]
    finally:
        live.kill()
        live.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_folders_whose_owner_is_gone(tmp_path):
    """Checkpoints, Fisher cache entries and LoRA outputs follow the same rule as a merge's folder."""
    import json

    from fusion_gui.engine.io.partial import OTHER_HOST, UNKNOWN, claim, owner_record, sweep_partials

    dead = owner_record("distillation checkpoint") | {"pid": _dead_pid()}
    elsewhere = owner_record("LoRA extraction") | {"host": "another-machine"}
    folders = {"checkpoint-4": dead, ".tmp-fisher-abc-0123abcd": dead | {"kind": "Fisher estimate"},
               ".lora.partial-0123abcd": elsewhere, ".old.partial-89abcdef": None, "checkpoint-2": None}
    for name, record in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "weights").write_bytes(b"x" * 10)
        if record is not None:
            (tmp_path / name / OWNER_FILE).write_text(json.dumps(record))
    claim(tmp_path / ".mine.partial-00000000", "merge")  # this process: running
    states = {Path(p.path).name: p.state for p in find_partials(tmp_path)}
    assert states == {"checkpoint-4": GONE, ".tmp-fisher-abc-0123abcd": GONE, ".lora.partial-0123abcd": OTHER_HOST,
                      ".old.partial-89abcdef": UNKNOWN, ".mine.partial-00000000": RUNNING}  # checkpoint-2 is finished
    logs = sweep_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lora.partial-0123abcd", ".mine.partial-00000000", ".old.partial-89abcdef", "checkpoint-2"]
    warned = " ".join(log.message for log in logs if log.level == "warning")
    assert "another-machine" in warned and ".old.partial-89abcdef" in warned
    assert sum("Removed" in log.message for log in logs) == 2


def test_an_output_folder_that_appears_meanwhile_keeps_the_result_under_another_name(tmp_path):
    from fusion_gui.engine.errors import OutputError
    from fusion_gui.engine.io.partial import new_partial, publish

    out = tmp_path / "out"
    temp = new_partial(out, "merge")
    (temp / "model.safetensors").write_bytes(b"hours of work")
    out.mkdir()  # someone else made OUT_DIR while the job ran
    with pytest.raises(OutputError, match="appeared while writing") as err:
        publish(temp, out, force=False)
    kept = Path(str(err.value).split("the result is in '")[1].rstrip("'."))
    assert (kept / "model.safetensors").read_bytes() == b"hours of work"
    assert not temp.exists() and not (kept / OWNER_FILE).exists()  # no later sweep deletes it
