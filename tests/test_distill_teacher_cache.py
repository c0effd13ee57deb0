"""The offline teacher: the sparse KL against the full KL, the capture job's cache (reuse, refusal of
another teacher's or data's cache, nothing left on cancel or a full disk) and training from it."""

from __future__ import annotations

import dataclasses
import errno
import json

import pytest
import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.distill import config_from_dict, distill, losses as L
from fusion_gui.engine.distill.sparse_kl import sparse_forward_kl, teacher_top_k
from fusion_gui.engine.distill.teacher_capture import capture_teacher
from fusion_gui.engine.distill.teacher_events import CaptureResult
from fusion_gui.engine.errors import Cancelled, InputError, OutputError
from fusion_gui.events import Progress, TrainStep
from fixtures.word_corpus import teacher_and_student
from helpers import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sparse_kl_with_k_equal_to_the_vocabulary_is_the_full_kl():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 7, 40, generator=gen, requires_grad=True), 3 * torch.randn(3, 7, 40, generator=gen)
    mask = torch.rand(3, 7, generator=gen) > 0.3
    for temperature in (1.0, 2.0):
        ids, values, rest = teacher_top_k(t, 40, temperature)
        assert float(rest.abs().max()) == 0.0
        sparse = sparse_forward_kl(s, ids, values, rest, mask, temperature)
        full = L.forward_kl(s, t, mask, temperature)
        assert torch.allclose(sparse, full, atol=1e-5), (sparse, full)
    sparse.backward()
    assert s.grad.isfinite().all() and s.grad.abs().sum() > 0


def test_sparse_kl_with_fewer_tokens_counts_the_rest_as_one_bucket():
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 30, generator=gen), torch.randn(4, 30, generator=gen)
    ids, values, rest = teacher_top_k(t, 5)
    assert torch.allclose(values.exp().sum(-1) + rest, torch.ones(4), atol=1e-6)
    p, q = t.softmax(-1), s.softmax(-1)
    outside = torch.ones(4, 30, dtype=torch.bool).scatter(-1, ids.long(), False)
    by_hand = [sum(p[i, j] * (p[i, j] / q[i, j]).log() for j in ids[i].tolist())
               + p[i][outside[i]].sum() * (p[i][outside[i]].sum() / q[i][outside[i]].sum()).log() for i in range(4)]
    assert torch.allclose(sparse_forward_kl(s, ids, values, rest), torch.stack(by_hand).mean(), atol=1e-5)
    assert sparse_forward_kl(s, ids, values, rest) <= L.forward_kl(s, t) + 1e-6  # grouping never adds KL


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    root = teacher_and_student(tmp_path_factory.mktemp("teacher_cache"), lines=120)
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=128), seed=2), root / "other")
    return root


def _config(root, teacher="teacher", cache=None, **training):
    opts = {"max_steps": 8, "batch_size": 4, "seq_length": 32, "learning_rate": 3e-3, "device": "cpu",
            "seed": 0} | training
    raw = {"teacher": str(root / teacher), "student": str(root / "student"),
           "data": {"path": str(root / "corpus.txt"), "eval_fraction": 0.1},
           "losses": {"forward_kl": 1.0}, "training": opts}
    return config_from_dict(raw | ({"teacher_cache": str(cache)} if cache else {}))


def test_capture_writes_a_cache_that_is_reused_and_never_taken_for_another_teacher(models, tmp_path):
    cache = tmp_path / "cache"
    events, result = run_job(capture_teacher(_config(models), cache, top_k=16))
    assert isinstance(result, CaptureResult) and not result.reused and result.top_k == 16
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].tensors_done == progress[-1].tensors_total == result.blocks
    info = json.loads((cache / "teacher_cache.json").read_text())
    assert info["top_k"] == 16 and info["blocks"] == result.blocks
    assert sum(f.stat().st_size for f in cache.glob("*.safetensors")) >= result.bytes_written
    # a second capture for another student of the same teacher, data and settings: found, not run again
    again = run_job(capture_teacher(_config(models), cache, top_k=16))[1]
    assert again.reused
    # another teacher's config names the difference and trains nothing
    with pytest.raises(InputError, match="captured with another teacher than this config's"):
        run_job(distill(_config(models, teacher="other", cache=cache), tmp_path / "out"))
    with pytest.raises(InputError, match=r"with other settings \(seq_length or temperature\)"):
        run_job(distill(_config(models, cache=cache, seq_length=16), tmp_path / "out"))
    (tmp_path / "edited.txt").write_text((models / "corpus.txt").read_text().replace("cat", "dog"))
    edited = _config(models, cache=cache)
    edited = dataclasses.replace(edited, data=dataclasses.replace(edited.data, path=str(tmp_path / "edited.txt")))
    with pytest.raises(InputError, match="captured with other data than"):
        run_job(distill(edited, tmp_path / "out"))
    with pytest.raises(InputError, match="already holds a teacher cache of another"):
        run_job(capture_teacher(_config(models, teacher="other"), cache, top_k=16))
    assert not (tmp_path / "out").exists()


def test_cancel_and_a_full_disk_leave_no_cache(models, tmp_path, monkeypatch):
    token = CancelToken()
    gen = capture_teacher(_config(models), tmp_path / "cancelled", top_k=8, cancel=token)
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, Progress):
                token.cancel()
    import safetensors.torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OutputError, match="Not enough disk space"):
        run_job(capture_teacher(_config(models), tmp_path / "full", top_k=8))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no cache, no hidden partial folder


def test_pre_flight_refuses_a_cache_bigger_than_the_free_disk(models, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OutputError, match="needs .* free"):
        run_job(capture_teacher(_config(models), tmp_path / "cache", top_k=8))
    assert not (tmp_path / "cache").exists()


def test_training_from_the_cache_matches_the_live_teacher(models, tmp_path):
    full = tmp_path / "full"
    run_job(capture_teacher(_config(models), full, top_k=128))  # k = vocabulary: the exact teacher
    live = [e for e in run_job(distill(_config(models), tmp_path / "live", smoke=False))[0] if isinstance(e, TrainStep)]
    cached = [e for e in run_job(distill(_config(models, cache=full), tmp_path / "cached", smoke=False))[0]
              if isinstance(e, TrainStep)]
    a, b = [e.losses["forward_kl"] for e in live], [e.losses["forward_kl"] for e in cached]
    assert len(a) == len(b) == 8 and a[-1] < a[0]
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 1e-3, (a, b)


def test_cli_captures_then_trains_from_the_cache(models, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("FUSION_GUI_HISTORY", "0")
    (tmp_path / "distill.yml").write_text(
        f"teacher: {models / 'teacher'}\nstudent: {models / 'student'}\ndata: {models / 'corpus.txt'}\n"
        "losses: {forward_kl: 1.0}\ntraining: {max_steps: 2, batch_size: 4, seq_length: 32, device: cpu}\n")
    code, out, err = run_cli("capture-teacher", tmp_path / "distill.yml", tmp_path / "cache", "--top-k", "8")
    assert code == 0, err
    assert "top 8" in out and "--teacher-cache" in out
    code, out, err = run_cli("distill", tmp_path / "distill.yml", tmp_path / "out", "--teacher-cache",
                             tmp_path / "cache", "--no-smoke")
    assert code == 0, err
    assert "2 steps" in out
    assert "teacher_cache" in (tmp_path / "out" / "distill_config.yml").read_text()
    (tmp_path / "hidden.yml").write_text((tmp_path / "distill.yml").read_text().replace(
        "{forward_kl: 1.0}", "{forward_kl: 1.0, hidden_mse: 1.0}"))
    code, _, err = run_cli("distill", tmp_path / "hidden.yml", tmp_path / "out2", "--teacher-cache",
                           tmp_path / "cache")
    assert code == 2 and "hidden_mse" in err and not (tmp_path / "out2").exists()


def test_chunked_loss_from_the_cache_equals_the_full_logits(models, tmp_path, monkeypatch):
    import fusion_gui.engine.distill.cached_trainer as cached_trainer

    chunked, calls = cached_trainer.chunked_loss, []
    monkeypatch.setattr(cached_trainer, "chunked_loss", lambda *a, **k: (calls.append(a[3]), chunked(*a, **k))[1])
    full = tmp_path / "cache"
    run_job(capture_teacher(_config(models), full, top_k=16))
    runs = {}
    for chunk in (0, 24):  # 24 positions a chunk: several chunks per batch of 4 x 31 positions
        events = run_job(distill(_config(models, cache=full, loss_chunk=chunk, max_steps=4), tmp_path / f"out{chunk}",
                              smoke=False))[0]
        runs[chunk] = [e.losses["forward_kl"] for e in events if isinstance(e, TrainStep)]
    assert len(runs[0]) == 4 and runs[0] == pytest.approx(runs[24], rel=1e-4)
    assert calls and set(calls) == {24}  # the chunked run took the chunked path, the other did not
