"""On-policy distillation (GKD's lmbda): the student writes, the teacher scores; live samples."""

from __future__ import annotations

import pytest
import torch

from fusion_gui.engine.distill import config_from_dict, distill
from fusion_gui.engine.distill.on_policy import generate_completions
from fusion_gui.engine.distill.teacher_events import StudentSample
from fusion_gui.engine.errors import InputError
from fusion_gui.events import TrainStep
from fixtures.word_corpus import word_corpus
from helpers import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer

    root = tmp_path_factory.mktemp("on_policy")
    (root / "corpus.txt").write_text(word_corpus(80))
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=128), seed=0), root / "teacher")
    # padded embedding rows beyond the tokenizer's 128 ids: never sampled
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=144), seed=1), root / "student",
               tokenizer=False)
    write_tiny_tokenizer(root / "student", 128)
    return root


def _config(root, on_policy, **training):
    opts = {"max_steps": 6, "batch_size": 4, "seq_length": 32, "learning_rate": 3e-3, "device": "cpu",
            "seed": 0} | training
    return config_from_dict({"teacher": str(root / "teacher"), "student": str(root / "student"),
                             "data": str(root / "corpus.txt"), "losses": {"jsd": {"weight": 1.0, "beta": 0.5}},
                             "training": opts, "on_policy": on_policy})


def test_generated_tokens_carry_the_loss_up_to_the_first_eos():
    from fusion_gui.engine.synthetic_models import build_model, tiny_config

    model = build_model(tiny_config("llama", layers=1, hidden=32, vocab=144), seed=3).train()
    prompts = torch.randint(3, 100, (3, 5), generator=torch.Generator().manual_seed(0))
    seq, mask = generate_completions(model, prompts, 6, 1.0, eos_id=None, pad_id=0, vocab=128)
    assert seq.shape == (3, 11) and torch.equal(seq[:, :5], prompts) and int(seq.max()) < 128
    assert not mask[:, :4].any() and mask[:, 4:].all()  # position 4 predicts the first written token
    assert model.training  # back in training mode after sampling
    eos = int(seq[0, 7])  # call the third written token of row 0 "EOS": what follows it is padding
    seq2, mask2 = generate_completions(model, prompts, 6, 0.0, eos_id=eos, pad_id=0, vocab=128)
    for row in range(3):
        written = seq2[row, 5:].tolist()
        stop = written.index(eos) + 1 if eos in written else len(written)
        assert mask2[row, 4:].tolist()[: len(written)] == [i < stop for i in range(len(written))]


def test_on_policy_run_shows_scored_samples_and_lowers_the_divergence(models, tmp_path):
    spec = {"lmbda": 1.0, "max_new_tokens": 8, "temperature": 1.0, "samples_every": 3}
    events, result = run_job(distill(_config(models, spec, learning_rate=1e-2), tmp_path / "out", smoke=False))
    samples = [e for e in events if isinstance(e, StudentSample)]
    assert [s.step for s in samples] == [1, 3, 6]
    assert all(len(s.tokens) == len(s.teacher_log_probs) > 0 for s in samples)
    assert all(v <= 0 for s in samples for v in s.teacher_log_probs) and samples[0].prompt
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert len(steps) == 6 and steps[-1].losses["jsd"] < steps[0].losses["jsd"]
    assert (tmp_path / "out" / "config.json").is_file()


def test_on_policy_options_are_checked():
    with pytest.raises(InputError, match="lmbda"):
        _config_raw({"lmbda": 1.5})
    with pytest.raises(InputError, match="max_new_tokens"):
        _config_raw({"max_new_tokens": 64})  # not below seq_length 32
    with pytest.raises(InputError, match="live teacher"):
        _config_raw({"lmbda": 0.5}, teacher_cache="somewhere")


def _config_raw(on_policy, **extra):
    return config_from_dict({"teacher": "t", "student": "s", "data": "d", "losses": {"forward_kl": 1},
                             "training": {"seq_length": 32}, "on_policy": on_policy} | extra)
