"""A disk that refuses the output: one sentence naming the folder, its disk and the space needed, and
nothing left behind. A process file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so that write()
fails with EFBIG instead of killing the process) stands in for a full disk or a FAT32 stick."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fusion_gui.engine.io.writer import format_size

resource = pytest.importorskip("resource")  # POSIX only
REPO = Path(__file__).resolve().parents[1]


def _limited(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited through exec: write() returns EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _fusion_gui(*args, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fusion_gui", *map(str, args)], preexec_fn=_limited(limit),
                          env=env, capture_output=True, text=True, timeout=600)


def test_merge_onto_a_disk_that_refuses_the_shards_says_so_and_leaves_nothing(llama_family, tmp_path):
    from fusion_gui.engine.merge import MergeOptions, plan_merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict

    _, a, b = llama_family
    data = {"merge_method": "linear", "models": [{"model": str(m), "parameters": {"weight": 0.5}} for m in (a, b)]}
    recipe = tmp_path / "r.yml"
    recipe.write_text(yaml.safe_dump(data))
    parent = tmp_path / "outs"
    parent.mkdir()
    plan = plan_merge(recipe_from_dict(data), parent / "merged", MergeOptions(device="cpu"))
    plan.close()
    needed = plan.summary.output_bytes
    result = _fusion_gui("merge", recipe, parent / "merged", "--no-progress", "--device", "cpu",
                         limit=needed // 4)
    assert result.returncode == 1, result.stderr  # the disk, not the recipe: not an input error
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message, message
    assert f"in {parent} " in message and "the disk mounted at" in message.lower()
    assert f"the output needs {format_size(needed)}" in message
    assert list(parent.iterdir()) == []  # no OUT_DIR, no partial folder


def test_distillation_checkpoint_the_disk_refuses_says_so_and_leaves_nothing(tmp_path):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer

    (tmp_path / "corpus.txt").write_text("\n".join(f"the cat {i} sat on the mat and the dog ran" for i in range(200)))
    save_model(build_model(tiny_config("llama", layers=2, hidden=64, vocab=128), seed=0), tmp_path / "teacher")
    save_model(build_model(tiny_config("llama", layers=2, hidden=32, vocab=128), seed=1), tmp_path / "student",
               tokenizer=False)
    write_tiny_tokenizer(tmp_path / "student", 128)
    student_bytes = (tmp_path / "student" / "model.safetensors").stat().st_size
    config = tmp_path / "distill.yml"
    config.write_text(yaml.safe_dump({
        "teacher": str(tmp_path / "teacher"), "student": str(tmp_path / "student"),
        "data": str(tmp_path / "corpus.txt"), "losses": {"forward_kl": 1.0},
        "training": {"max_steps": 4, "batch_size": 4, "seq_length": 16, "checkpoint_every": 2, "device": "cpu"}}))
    parent = tmp_path / "outs"
    parent.mkdir()
    result = _fusion_gui("distill", config, parent / "student", "--no-progress", limit=student_bytes // 2)
    assert result.returncode == 1, result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(message) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"in {parent / 'student-checkpoints'} " in message[0] and "a checkpoint needs" in message[0]
    assert list(parent.iterdir()) == []  # no output, no partial folder, no half-written checkpoint
