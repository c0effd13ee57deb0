"""Distillation: each loss against another computation, the job end to end on tiny models, bad inputs."""

from __future__ import annotations

import json
import math
import random
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.distill import config_from_dict, distill, losses as L
from fusion_gui.engine.errors import Cancelled, InputError
from fusion_gui.events import EvalStep, Log, TrainStep
from helpers import run_job



pytestmark = pytest.mark.usefixtures("one_torch_thread")


S = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])  # student logits, 2 positions x 3 tokens
T = torch.tensor([[0.5, 2.5, -1.0], [1.0, 0.0, 2.0]])  # teacher logits


def _kl_by_hand(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return sum(p[i, j] * math.log(p[i, j] / q[i, j]) for i in range(2) for j in range(3)) / 2


def test_forward_and_reverse_kl():
    p, q = T.softmax(-1), S.softmax(-1)
    ref = F.kl_div(S.log_softmax(-1), T.softmax(-1), reduction="batchmean")
    assert torch.allclose(L.forward_kl(S, T), ref, atol=1e-6)
    assert torch.allclose(L.forward_kl(S, T), _kl_by_hand(p, q), atol=1e-6)
    assert torch.allclose(L.reverse_kl(S, T), _kl_by_hand(q, p), atol=1e-6)
    assert torch.allclose(L.forward_kl(S, T, temperature=2.0), L.forward_kl(S / 2, T / 2), atol=1e-6)
    mask = torch.tensor([True, False])  # only the first position counts
    assert torch.allclose(L.forward_kl(S, T, mask), F.kl_div(S[:1].log_softmax(-1), T[:1].softmax(-1),
                                                              reduction="batchmean"), atol=1e-6)


@pytest.mark.parametrize("beta", [0.5, 0.2])
def test_generalized_jsd_matches_a_manual_mixture(beta):
    p_s, p_t = S.softmax(-1), T.softmax(-1)
    m = beta * p_t + (1 - beta) * p_s  # TRL GKD: beta weighs the teacher in the mixture and its KL
    ref = beta * _kl_by_hand(p_t, m) + (1 - beta) * _kl_by_hand(p_s, m)
    assert torch.allclose(L.generalized_jsd(S, T, beta=beta), ref, atol=1e-6)
    assert torch.allclose(L.generalized_jsd(S, T, beta=0.0), L.forward_kl(S, T))
    assert torch.allclose(L.generalized_jsd(S, T, beta=1.0), L.reverse_kl(S, T))


def test_taid_target_moves_from_student_to_teacher():
    assert torch.allclose(L.taid_target_log_probs(S, T, 0.0).exp(), S.softmax(-1), atol=1e-6)
    assert torch.allclose(L.taid_target_log_probs(S, T, 1.0).exp(), T.softmax(-1), atol=1e-6)
    mid = L.taid_target_log_probs(S, T, 0.3).exp()
    assert torch.allclose(mid, (0.7 * S + 0.3 * T).softmax(-1), atol=1e-6)
    assert L.taid(S, T, 0.0).abs() < 1e-6
    assert torch.allclose(L.taid(S, T, 1.0), L.forward_kl(S, T), atol=1e-6)
    s = S.clone().requires_grad_()
    L.taid(s, T, 0.5).backward()  # the target is detached: gradient flows only through the student term
    target = L.taid_target_log_probs(S, T, 0.5).exp()
    assert torch.allclose(s.grad, (S.softmax(-1) - target) / 2, atol=1e-6)


def test_taid_schedule_follows_the_paper():
    sched = L.TaidSchedule(t_start=0.4, t_end=1.0, alpha=0.1, beta=0.9)
    assert sched.update(1.0, 1, 100) == 0.4  # the first loss only sets the reference
    momentum = 0.1 * 0.5  # (1 - beta) * relative improvement (1.0 -> 0.5)
    expected = 0.4 + 0.1 / (1 + math.exp(-momentum)) * (1 - 0.4)
    assert sched.update(0.5, 2, 100) == pytest.approx(expected)
    assert sched.update(0.5, 90, 100) == pytest.approx(0.4 + 0.6 * 0.9)  # never below the linear ramp
    for step in range(91, 200):
        sched.update(0.1, step, 100)
    assert sched.t == 1.0
    twin = L.TaidSchedule()
    twin.load_state_dict(sched.state_dict())
    assert twin.state_dict() == sched.state_dict()


def test_hidden_and_ce_losses():
    a, b = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    assert torch.allclose(L.hidden_mse(a, b), F.mse_loss(a, b), atol=1e-6)
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    assert torch.allclose(L.hidden_cosine(a, b), (1 - cos).mean(), atol=1e-6)
    labels = torch.tensor([2, 1])
    assert torch.allclose(L.cross_entropy(S, labels), F.cross_entropy(S, labels), atol=1e-6)


def test_config_rejects_unknown_keys_and_bad_values():
    base = {"teacher": "t", "student": "s", "data": "d.txt", "losses": {"forward_kl": 1.0}}
    with pytest.raises(InputError, match="lr_shedule"):
        config_from_dict({**base, "training": {"lr_shedule": "cosine"}})
    with pytest.raises(InputError, match="kl_forward"):
        config_from_dict({**base, "losses": {"kl_forward": 1.0}})
    with pytest.raises(InputError, match="colour"):
        config_from_dict({**base, "colour": 1})
    with pytest.raises(InputError, match="not both"):
        config_from_dict({**base, "training": {"max_steps": 3, "epochs": 1}})
    with pytest.raises(InputError, match="beta"):
        config_from_dict({**base, "losses": {"jsd": {"weight": 1, "beta": 2}}})
    cfg = config_from_dict({**base, "losses": {"taid": {"weight": 1, "t_start": 0.2}, "ce": 0.1}})
    assert cfg.losses[0].params["t_start"] == 0.2 and cfg.losses[1].weight == 0.1
    cfg = config_from_dict({**base, "training": {"learning_rate": "1e-3"}})  # YAML 1.1 reads 1e-3 as text
    assert cfg.training.learning_rate == 0.001


def test_output_keeps_the_students_saved_dtype(tmp_path):
    from fusion_gui.engine.distill.trainer import _saved_dtype
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=64), 0, torch.bfloat16), tmp_path / "m")
    assert _saved_dtype(str(tmp_path / "m")) == torch.bfloat16


# ---- the job, on tiny models -----------------------------------------------------------------

WORDS = "the cat dog sat ran on under a mat log big red".split()


def _corpus(seed: int, lines: int) -> str:
    r = random.Random(seed)  # a little grammar: learnable in a few dozen steps
    return "\n".join(" ".join(r.choice(WORDS) for _ in range(r.randint(6, 12))) + "." for _ in range(lines))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A teacher trained briefly on the corpus; a narrower student with a padded vocabulary."""
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("distill")
    (root / "corpus.txt").write_text(_corpus(0, 300))
    teacher = build_model(tiny_config("llama", layers=2, hidden=64, vocab=128), seed=0)
    save_model(teacher, root / "teacher")
    tok = AutoTokenizer.from_pretrained(root / "teacher")
    ids = torch.tensor(tok(_corpus(1, 300).replace("\n", " "))["input_ids"])
    blocks = ids[: len(ids) // 32 * 32].view(-1, 32)
    teacher.train()
    opt = torch.optim.AdamW(teacher.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        batch = blocks[torch.randint(len(blocks), (16,), generator=gen)]
        teacher(input_ids=batch, labels=batch).loss.backward()
        opt.step(), opt.zero_grad()
    save_model(teacher.eval(), root / "teacher")
    # 144 embedding rows for a 128-token tokenizer: the logits beyond 128 must be sliced off
    save_model(build_model(tiny_config("llama", layers=2, hidden=32, vocab=144), seed=1), root / "student",
               tokenizer=False)
    write_tiny_tokenizer(root / "student", 128)
    return root


def _config(root, **training):
    opts = {"max_steps": 50, "batch_size": 8, "seq_length": 32, "learning_rate": 3e-3, "warmup_steps": 2,
            "device": "cpu", "seed": 0} | training
    losses = training.pop("losses", None) or {"forward_kl": 1.0, "hidden_cosine": 0.1}
    opts.pop("losses", None)
    return config_from_dict({"teacher": str(root / "teacher"), "student": str(root / "student"),
                             "data": {"path": str(root / "corpus.txt"), "eval_fraction": 0.1},
                             "losses": losses, "training": opts})


def _heldout_kl(teacher_path, student_path) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher_path)
    ids = torch.tensor(tok(_corpus(7, 40).replace("\n", " "))["input_ids"])[: 8 * 32].view(8, 32)
    with torch.no_grad():
        t = AutoModelForCausalLM.from_pretrained(teacher_path)(input_ids=ids).logits[..., :128]
        s = AutoModelForCausalLM.from_pretrained(student_path)(input_ids=ids).logits[..., :128]
    return float(L.forward_kl(s, t))


def test_distilled_student_moves_toward_the_teacher(setup, tmp_path):
    events, result = run_job(distill(_config(setup, eval_every=25), tmp_path / "out"))
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert [e.step for e in steps] == list(range(1, 51)) and all(e.total_steps == 50 for e in steps)
    assert {"forward_kl", "hidden_cosine", "total"} <= set(steps[0].losses)
    assert [e.step for e in events if isinstance(e, EvalStep)] == [25, 50]
    before, after = _heldout_kl(setup / "teacher", setup / "student"), _heldout_kl(setup / "teacher", result.out_dir)
    print(f"held-out KL to the teacher: {before:.4f} -> {after:.4f}")
    assert after < 0.6 * before, (before, after)  # measured: about 0.3x
    assert result.final_eval["kl_teacher"] < steps[0].losses["forward_kl"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "teacher" in card and "corpus.txt" in card and "forward_kl" in card and "kl_teacher" in card
    assert result.smoke is not None and f"Verdict: **{result.smoke.verdict}**" in card
    assert [c.name for c in result.smoke.checks][:4] == ["tokenizer", "token ids", "config", "finite"]
    assert "base_model" not in card.split("---")[1]  # a local student: nothing the Hub could resolve
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder, no checkpoints


def test_resume_continues_the_same_trajectory(setup, tmp_path):
    losses = {"taid": {"weight": 1.0, "alpha": 0.05}, "ce": 0.1, "hidden_mse": 0.1}  # + the projection
    full, _ = run_job(distill(_config(setup, max_steps=8, checkpoint_every=4, losses=dict(losses),
                                   checkpoint_dir=str(tmp_path / "ckpt")), tmp_path / "a"))
    resumed, _ = run_job(distill(_config(setup, max_steps=8, checkpoint_every=4, losses=dict(losses),
                                      checkpoint_dir=str(tmp_path / "ckpt-b"),
                                      resume_from=str(tmp_path / "ckpt" / "checkpoint-4")), tmp_path / "b"))
    full = {e.step: e for e in full if isinstance(e, TrainStep)}
    resumed = {e.step: e for e in resumed if isinstance(e, TrainStep)}
    assert sorted(resumed) == [5, 6, 7, 8]
    for step in resumed:
        assert resumed[step].taid_t == pytest.approx(full[step].taid_t)
        assert resumed[step].lr == pytest.approx(full[step].lr)
        for k, v in full[step].losses.items():
            assert resumed[step].losses[k] == pytest.approx(v, rel=1e-4), (step, k)


def test_cancel_while_paused_writes_nothing(setup, tmp_path):
    cancel, pause = CancelToken(), threading.Event()
    pause.set()
    gen = distill(_config(setup, max_steps=20), tmp_path / "out", cancel=cancel, pause=pause)
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, Log) and event.message.startswith("Paused"):
                assert event.message == "Paused after step 1."
                cancel.cancel()
    assert list(tmp_path.iterdir()) == []


def test_save_checkpoint_now_writes_a_resumable_checkpoint(setup, tmp_path):
    save_now = threading.Event()
    save_now.set()  # as the Distill view's button does; the engine saves after the current step
    gen = distill(_config(setup, max_steps=4), tmp_path / "out", save_now=save_now)
    saved = []
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if isinstance(event, Log) and event.message.startswith("Saved checkpoint"):
            saved.append(event.message)
    assert not save_now.is_set() and len(saved) == 1
    folders = sorted(p.name for p in Path(result.checkpoint_dir).glob("checkpoint-*"))
    assert folders == ["checkpoint-1"]  # after the step during which it was asked, once
    assert (Path(result.checkpoint_dir) / "checkpoint-1" / "trainer_state.json").is_file()
    assert (tmp_path / "out" / "config.json").is_file()


def test_bad_inputs_give_clear_errors_and_write_nothing(setup, tmp_path):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=100), seed=2), tmp_path / "other")
    out = tmp_path / "out"
    cfg = _config(setup)
    import dataclasses

    with pytest.raises(InputError, match=r"different vocabularies.*128 tokens.*100"):
        next(distill(dataclasses.replace(cfg, student=str(tmp_path / "other")), out))
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(InputError, match="empty.txt' holds no text"):
        next(distill(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(tmp_path / "empty.txt"))),
                     out))
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": "a b c"}) + "\n" + json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InputError, match="Line 2 of .*rows.jsonl' has no text field 'text'"):
        next(distill(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(tmp_path / "rows.jsonl"))),
                     out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "other", "rows.jsonl"]


def test_dataset_folder_and_jsonl_are_read(tmp_path):
    import datasets

    from fusion_gui.engine.distill.data import read_documents

    datasets.Dataset.from_dict({"body": ["one", "two"]}).save_to_disk(str(tmp_path / "ds"))
    assert read_documents(tmp_path / "ds", "body") == ["one", "two"]
    with pytest.raises(InputError, match="no text field 'text' \\(its columns: body\\)"):
        read_documents(tmp_path / "ds")
    (tmp_path / "d.jsonl").write_text('{"text": "hi"}\n\n{"text": "there"}\n')
    assert read_documents(tmp_path / "d.jsonl") == ["hi", "there"]


def test_cli_writes_a_loadable_student(setup, tmp_path, run_cli):
    from transformers import AutoModelForCausalLM

    (tmp_path / "distill.yml").write_text(
        f"teacher: {setup / 'teacher'}\nstudent: {setup / 'student'}\ndata: {setup / 'corpus.txt'}\n"
        "losses:\n  jsd: {weight: 1.0, beta: 0.5}\n  ce: 0.2\ntemperature: 2.0\n"
        "training: {max_steps: 3, batch_size: 4, seq_length: 32, device: cpu}\n")
    code, out, err = run_cli("distill", tmp_path / "distill.yml", tmp_path / "student-out")
    assert code == 0, err
    assert "3 steps" in out and "perplexity student" in out
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "student-out")
    assert model.config.hidden_size == 32 and not hasattr(model, "distill_projection")
    assert (tmp_path / "student-out" / "distill_config.yml").is_file()
    (tmp_path / "bad.yml").write_text("teacher: a\nstudent: b\ndata: c\nlosses: {ce: 1}\nepochs: 2\n")
    code, _, err = run_cli("distill", tmp_path / "bad.yml", tmp_path / "x")
    assert code == 2 and "epochs" in err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision(setup, tmp_path, precision):
    from transformers import AutoModelForCausalLM

    cfg = _config(setup, max_steps=20, device="auto", precision=precision, eval_every=10,
                  losses={"taid": 1.0, "hidden_mse": 0.1, "ce": 0.1})
    events, result = run_job(distill(cfg, tmp_path / "out"))
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert len(steps) == 20 and all(math.isfinite(v) for e in steps for v in e.losses.values())
    assert not any(isinstance(e, Log) and e.level == "warning" for e in events)  # no fp32 fallback
    assert _heldout_kl(setup / "teacher", result.out_dir) < _heldout_kl(setup / "teacher", setup / "student")
    model = AutoModelForCausalLM.from_pretrained(result.out_dir)
    assert model.dtype == torch.float32  # saved in the student's own dtype, not the autocast one
