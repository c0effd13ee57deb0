"""Data-parallel distillation: two CPU processes (gloo) under `accelerate launch` run the same config."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from fixtures.word_corpus import teacher_and_student

pytestmark = pytest.mark.slow


WRAPPER = """
import sys
import torch.distributed as dist
from fusion_gui.cli import main

code = main(sys.argv[1:])
# each rank reports to its own file: both share one stdout pipe, where lines from two processes can interleave
rank = dist.get_rank()
with open(f"rank-{rank}.txt", "w") as f:
    f.write(f"rank {rank} of {dist.get_world_size()}: backend {dist.get_backend()}, exit {code}")
sys.exit(code)
"""


def test_two_processes_split_the_epoch_and_one_writes(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fusion_gui.engine.distill.data import load_blocks

    teacher_and_student(tmp_path, lines=60, student_hidden=16)
    (tmp_path / "distill.yml").write_text(
        "teacher: teacher\nstudent: student\ndata: {path: corpus.txt, eval_fraction: 0.1}\n"
        "losses: {forward_kl: 1.0, ce: 0.1}\n"
        "training: {epochs: 1, batch_size: 4, seq_length: 16, device: cpu, seed: 0}\n")
    (tmp_path / "run.py").write_text(WRAPPER)
    train, _ = load_blocks(str(tmp_path / "corpus.txt"), "text", AutoTokenizer.from_pretrained(tmp_path / "teacher"),
                           16, 0.1, 0)
    # one epoch of batches of 4, dealt out to two processes: each optimizer step consumes 8 blocks
    expected = math.ceil(math.ceil(len(train) / 4) / 2)
    assert expected >= 5

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE",
                                                                     "LOCAL_RANK", "MASTER_"))}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(tmp_path / "run.py"), "distill", "distill.yml", "out", "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ranks = [(tmp_path / f"rank-{r}.txt").read_text() for r in (0, 1)]
    assert ranks == ["rank 0 of 2: backend gloo, exit 0", "rank 1 of 2: backend gloo, exit 0"], proc.stdout
    assert proc.stdout.count("Wrote ") == 1, proc.stdout  # rank 0 alone reports
    assert f": {expected} steps in" in proc.stdout, proc.stdout
    # one output folder, written once, nothing half-written beside it
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "out"))) == ["out"]
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.config.hidden_size == 16 and torch.isfinite(next(model.parameters())).all()
    assert f"trained for {expected} steps" in (tmp_path / "out" / "README.md").read_text()
