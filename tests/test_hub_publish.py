"""Publishing to the fake Hub with the real huggingface_hub client: `fusion-gui push` and the publish job."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from fusion_gui.engine.errors import Cancelled, InputError


def _front(text: str) -> dict:
    return yaml.safe_load(text.split("---")[1])


@pytest.fixture
def merged(tmp_path):
    """An output folder as a merge leaves it: weights, config, card, recipe, and scores in the card."""
    from fusion_gui.engine.evaluate.model_card import CardScore, add_model_index
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    out = save_model(build_model(tiny_config("llama", layers=2, hidden=32), seed=1), tmp_path / "merged",
                     max_shard_size="40KB")
    (out / "mergekit_config.yml").write_text("merge_method: linear\nmodels:\n  - model: org/base\n"
                                             "  - model: org/ft@main\n  - model: ./local_folder\n")
    (out / "README.md").write_text("---\nbase_model:\n- org/base\nlibrary_name: transformers\ntags:\n- merge\n---\n"
                                   "\n# merged\n\nA merge.\n")
    add_model_index(out / "README.md", "merged", [CardScore("arc_easy", "acc", 0.5)])
    return out


def test_push_creates_the_repo_and_completes_the_card(hub, merged, capsys):
    from fusion_gui import cli

    before = (merged / "README.md").read_text()
    code = cli.main(["push", str(merged), "me/merged", "--private", "--license", "apache-2.0", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{hub.url}/me/merged" in out
    repo = hub.repos["me/merged"]
    assert repo.private and "model.safetensors.index.json" in repo.files and "config.json" in repo.files
    front = _front(repo.files["README.md"].decode())
    assert front["base_model"] == ["org/base", "org/ft"] and front["base_model_relation"] == "merge"
    assert front["license"] == "apache-2.0" and {"merge", "fusion-gui"} <= set(front["tags"])
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.5  # the scores kept
    assert (merged / "README.md").read_text() == before  # the user's folder is left as it was
    assert any(p.startswith("/api/models/me/merged/preupload/") for _, p, _ in hub.requests)


def test_publish_yields_progress_per_file_and_commits_on_a_branch(hub, merged):
    from fusion_gui.engine.hub import publish

    gen = publish(merged, "me/branchy", revision="v1")
    events = list(_drain(gen))
    stages = [e.stage for e in events]
    assert stages[0] == "create" and stages[-1] == "done" and "commit" in stages
    uploads = [e for e in events if e.stage == "upload"]
    assert uploads[-1].done == uploads[-1].total and uploads[-1].files_done == uploads[-1].files_total
    assert "README.md" in hub.repos["me/branchy"].files and "v1" in hub.repos["me/branchy"].branches


def _drain(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_publish_cancel_between_files_commits_nothing(hub, merged):
    from fusion_gui.engine.cancel import CancelToken
    from fusion_gui.engine.hub import publish

    cancel = CancelToken()
    with pytest.raises(Cancelled):
        for event in publish(merged, "me/cancelled", cancel=cancel):
            if event.stage == "upload":
                cancel.cancel()
    assert hub.repos["me/cancelled"].files == {}


def test_lora_and_distillation_cards(hub, tmp_path):
    from fusion_gui.engine.hub.card import completed_card

    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base", "peft_type": "LORA"}))
    front = _front(completed_card(lora))
    assert front["base_model"] == "org/base" and front["base_model_relation"] == "adapter"
    assert front["library_name"] == "peft"
    student = tmp_path / "student"
    student.mkdir()
    (student / "distill_config.yml").write_text("teacher: org/teacher\nstudent: org/student\n")
    front = _front(completed_card(student))
    assert front["base_model"] == "org/student" and front["teacher_model"] == "org/teacher"
    assert "distillation" in front["tags"]


def test_push_refusals(hub, merged, tmp_path, capsys, monkeypatch):
    from fixtures.hub_server import BAD_TOKEN
    from fusion_gui import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["push", str(empty), "me/x"]) == 2
    assert "holds no complete model weights" in capsys.readouterr().err
    assert cli.main(["push", str(merged), "not a repo"]) == 2
    assert "is not a Hub repo id" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", BAD_TOKEN)
    assert cli.main(["push", str(merged), "me/y"]) == 2
    assert "refused the Hugging Face token" in capsys.readouterr().err
