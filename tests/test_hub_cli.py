"""`fusion-gui merge` with `model: org/name` against the fake Hub: offline refusal, --allow-download, the
dry run's remote pre-flight."""

from __future__ import annotations

import pytest

RECIPE = """merge_method: linear
base_model: org/base
models:
  - model: org/base
    parameters: {weight: 0.5}
  - model: org/ft@main
    parameters: {weight: 0.5}
dtype: float32
"""


@pytest.fixture
def cli(capsys):
    from fusion_gui import cli as entry

    def run(*args):
        code = entry.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "recipe.yml"
    path.write_text(RECIPE)
    return path


def test_merge_without_permission_names_the_missing_models(hub, cli, recipe, tmp_path):
    code, _, err = cli("merge", recipe, tmp_path / "out", "--no-smoke")
    assert code == 2
    assert "Models 'org/base', 'org/ft@main' are neither a file or folder here nor in the local" in err
    assert "--allow-download" in err and err.count("\n") == 1
    assert not [r for r in hub.requests if "/resolve/" in r[1]]  # offline by default: the Hub was not asked


def test_dry_run_with_permission_plans_from_headers_and_says_how_much_downloads(hub, cli, recipe, tmp_path):
    code, out, err = cli("merge", recipe, tmp_path / "out", "--dry-run", "--allow-download")
    assert code == 0, err
    assert "hub model:       org/ft@main" in out and "LlamaForCausalLM, 2 layers" in out
    assert "tensors:         21 (2 layers)" in out and "est. peak memory:" in out  # the full plan, from headers
    assert "would download:" in out and not (tmp_path / "out").exists()
    assert not any(hub.gets("org/ft", f) for f in hub.repos["org/ft"].files if f.endswith(".safetensors"))


def test_merge_with_permission_downloads_then_merges(hub, cli, recipe, tmp_path):
    code, out, err = cli("merge", recipe, tmp_path / "out", "--no-smoke", "--allow-download", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "out" / "model.safetensors").is_file() or (tmp_path / "out" / "model.safetensors.index.json").is_file()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "- org/base" in card and "- org/ft" in card
    # now cached: the same merge runs offline, without the flag
    code, _, err = cli("merge", recipe, tmp_path / "again", "--no-smoke", "--no-progress")
    assert code == 0, err


def test_hf_hub_offline_wins_over_permission(hub, cli, recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("merge", recipe, tmp_path / "out", "--allow-download")
    assert code == 2 and "HF_HUB_OFFLINE is set" in err


def test_diff_refuses_a_gated_repo_with_its_page(hub, cli):
    code, _, err = cli("diff", "org/gated", "org/base", "--allow-download")
    assert code == 2 and f"request it at {hub.url}/org/gated" in err


def test_a_model_that_does_not_fit_is_refused_before_any_download(hub, cli, tmp_path):
    recipe = tmp_path / "misfit.yml"
    recipe.write_text(RECIPE.replace("org/ft@main", "org/other"))
    for extra in (["--dry-run"], []):
        code, out, err = cli("merge", recipe, tmp_path / "out", "--allow-download", "--no-smoke", *extra)
        assert code == 2 and "of 'org/other' is [256, 48] but [256, 32] in the base 'org/base'" in err
    assert "problem: Tensor 'lm_head.weight'" not in err
    assert not any(hub.gets(repo, f) for repo in ("org/base", "org/other")
                   for f in hub.repos[repo].files if f.endswith(".safetensors"))


def test_distill_names_missing_hub_models_and_then_reads_them_from_the_cache(hub, cli, tmp_path):
    from fusion_gui.cli.hub_models import local_folder
    from fusion_gui.engine.hub import download_model

    config = tmp_path / "distill.yml"
    config.write_text("teacher: org/ft\nstudent: org/base\ndata: corpus.txt\nlosses: {ce: 1}\n")
    code, _, err = cli("distill", config, tmp_path / "out")
    assert code == 2 and "Models 'org/ft', 'org/base' are neither" in err and "--allow-download" in err
    for _ in download_model("org/ft"):
        pass
    assert local_folder("org/ft").endswith(hub.repos["org/ft"].branches["main"])  # the cached snapshot
    assert local_folder(str(tmp_path)) == str(tmp_path) and local_folder("org/base") == "org/base"
