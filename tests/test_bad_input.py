"""Every bad input gives exit 2 and one sentence naming the problem; a cancel or Ctrl-C leaves
nothing behind."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config


def recipe_file(tmp_path, data):
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def ties(base, *models, **params):
    return {"merge_method": "ties", "base_model": str(base),
            "models": [{"model": str(m), "parameters": {"weight": 0.5, **params}} for m in models]}


def nothing_left(tmp_path, out="out"):
    return not (tmp_path / out).exists() and not list(tmp_path.glob(f".{out}.partial-*"))


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory):
    """A Llama like the fixtures but with a wider MLP: same names, other shapes."""
    config = tiny_config("llama")
    config.intermediate_size = 96
    return save_model(build_model(config, seed=1), tmp_path_factory.mktemp("wide") / "wide")


def test_missing_model_path(llama_family, tmp_path, run_cli):
    base, a, _ = llama_family
    code, _, err = run_cli("merge", recipe_file(tmp_path, ties(base, a, tmp_path / "nowhere")), tmp_path / "out")
    assert code == 2 and "nowhere" in err and "not found" in err
    assert nothing_left(tmp_path)


def test_shape_mismatch_names_tensor_and_shapes(llama_family, wide_llama, tmp_path, run_cli):
    base, a, _ = llama_family
    code, _, err = run_cli("merge", recipe_file(tmp_path, ties(base, a, wide_llama)), tmp_path / "out")
    assert code == 2
    assert "mlp" in err and "[128, 64]" in err and "[96, 64]" in err and "wide" in err
    assert nothing_left(tmp_path)


def test_architecture_mismatch(llama_family, gpt2_family, tmp_path, run_cli):
    code, _, err = run_cli("merge", recipe_file(tmp_path, ties(llama_family[0], gpt2_family[1])), tmp_path / "out")
    assert code == 2 and "LlamaForCausalLM" in err and "GPT2LMHeadModel" in err


def test_missing_tensor_is_named(llama_family, tmp_path, run_cli):
    from safetensors.torch import load_file, save_file

    base, a, _ = llama_family
    broken = tmp_path / "broken"
    shutil.copytree(a, broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    name = "model.layers.2.self_attn.v_proj.weight"
    shard = broken / index["weight_map"].pop(name)
    tensors = load_file(shard)
    del tensors[name]
    save_file(tensors, shard, metadata={"format": "pt"})
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    code, _, err = run_cli("merge", recipe_file(tmp_path, ties(base, broken)), tmp_path / "out")
    assert code == 2 and name in err and "broken" in err


def test_truncated_shard(llama_family, tmp_path, run_cli):
    base, a, _ = llama_family
    broken = tmp_path / "cut"
    shutil.copytree(a, broken)
    shard = sorted(broken.glob("model-*.safetensors"))[1]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 100)
    code, _, err = run_cli("merge", recipe_file(tmp_path, ties(base, broken)), tmp_path / "out")
    assert code == 2 and shard.name in err and "truncated" in err


def test_unknown_key_and_missing_parameter(llama_family, tmp_path, run_cli):
    base, a, b = llama_family
    data = ties(base, a, b)
    data["mystery"] = 1
    code, _, err = run_cli("merge", recipe_file(tmp_path, data), tmp_path / "out")
    assert code == 2 and "'mystery'" in err
    data = {"merge_method": "linear", "models": [{"model": str(a)}, {"model": str(b)}]}
    code, _, err = run_cli("merge", recipe_file(tmp_path, data), tmp_path / "out")
    assert code == 2 and "'weight'" in err
    code, _, err = run_cli("merge", recipe_file(tmp_path, {**data, "merge_method": "frobnicate"}), tmp_path / "out")
    assert code == 2 and "frobnicate" in err


def test_existing_output_needs_force(llama_family, tmp_path, run_cli):
    base, a, b = llama_family
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    recipe = recipe_file(tmp_path, ties(base, a, b, density=0.5))
    code, _, err = run_cli("merge", recipe, out, "--no-progress")
    assert code == 2 and "--force" in err and (out / "keep.txt").exists()
    code, _, err = run_cli("merge", recipe, out, "--no-progress", "--force")
    assert code == 0, err
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()


def test_cancel_token_stops_within_a_tensor_and_cleans_up(llama_family, tmp_path):
    from fusion_gui.engine.cancel import CancelToken
    from fusion_gui.engine.errors import Cancelled
    from fusion_gui.engine.merge import merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict
    from fusion_gui.events import Progress

    base, a, b = llama_family
    token = CancelToken()
    gen = merge(recipe_from_dict(ties(base, a, b, density=0.5)), tmp_path / "out", cancel=token)
    seen = 0
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, Progress):
                seen += 1
                if seen == 3:
                    token.cancel()
                assert seen <= 3, "the merge went on after the cancel"
    assert nothing_left(tmp_path)


@pytest.mark.slow
def test_ctrl_c_leaves_nothing(tmp_path):
    """A real SIGINT to a real `fusion-gui merge` process: exit 130 and no files left."""
    from fusion_gui.engine.synthetic_models import build_family

    paths = build_family(tmp_path / "m", "llama", n_finetunes=2, layers=8, hidden=384, max_shard_size="20MB")
    recipe = recipe_file(tmp_path, ties(paths[0], *paths[1:], density=0.5))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fusion_gui", "merge", str(recipe), str(tmp_path / "out"),
                             "--device", "cpu", "--out-shard-size", "2MB"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the merge ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert nothing_left(tmp_path)


def test_engine_and_merge_command_import_no_qt(llama_family, tmp_path):
    base, a, b = llama_family
    recipe = recipe_file(tmp_path, ties(base, a, b, density=0.5))
    code = (
        "import sys\n"
        "from fusion_gui import cli\n"
        "import fusion_gui.engine.merge, fusion_gui.engine.inspect.diff\n"
        f"assert cli.main(['merge', {str(recipe)!r}, {str(tmp_path / 'o')!r}, '--no-progress']) == 0\n"
        "qt = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'superqt', 'qtpy')]\n"
        "assert not qt, qt\n"
        "print('no qt')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "no qt" in run.stdout


def test_plan_merge_with_no_models_says_so_in_a_sentence(tmp_path):
    """The app's first screen plans an empty recipe: that was 'list index out of range'."""
    from fusion_gui.engine.errors import InputError
    from fusion_gui.engine.merge import plan_merge
    from fusion_gui.engine.merge.recipe import Recipe

    with pytest.raises(InputError, match="names no models"):
        plan_merge(Recipe(merge_method="linear", models=[]), tmp_path / "out")
    assert not (tmp_path / "out").exists()
