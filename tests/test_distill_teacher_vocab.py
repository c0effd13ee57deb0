"""Teacher and student of different vocabularies: token matching across space markers, positions
aligned by character offsets, the shared-vocabulary KL and ULD, and a run end to end."""

from __future__ import annotations

import pytest
import torch

from fusion_gui.engine.distill import config_from_dict, distill, losses as L
from fusion_gui.engine.distill.uld_loss import shared_kl, sorted_wasserstein, uld
from fusion_gui.engine.distill.vocab_alignment import (SequenceAligner, SharedVocab, shared_vocab, token_text,
                                                      token_texts)
from fusion_gui.engine.errors import InputError
from fusion_gui.events import EvalStep, TrainStep
from fixtures.word_corpus import word_corpus
from helpers import run_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_space_markers_read_as_plain_text():
    assert token_text("\u2581the", byte_level=False) == " the"
    assert token_text("\u0120the", byte_level=True) == " the"
    assert token_text("\u010a", byte_level=True) == "\n"
    assert token_text("caf\u00c3\u00a9", byte_level=True) == "café"  # UTF-8 bytes in the byte alphabet


def _same_vocab(n: int) -> SharedVocab:
    ids = torch.arange(n)
    return SharedVocab(ids, ids, ids[:0], ids[:0])


def test_shared_kl_with_one_vocabulary_is_the_full_kl_and_uld_vanishes():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 20, generator=gen), 2 * torch.randn(2, 5, 20, generator=gen)
    vocab = _same_vocab(20)
    assert torch.allclose(shared_kl(s, t, vocab, temperature=2.0), L.forward_kl(s, t, temperature=2.0), atol=1e-5)
    assert float(uld(s, t, vocab)) == 0.0
    # permuted ids: the same tokens under other numbers give the same KL
    perm = torch.randperm(20, generator=gen)
    permuted = SharedVocab(torch.arange(20), perm, perm[:0], perm[:0])
    t_perm = torch.empty_like(t)
    t_perm[..., perm] = t
    assert torch.allclose(shared_kl(s, t_perm, permuted), L.forward_kl(s, t), atol=1e-5)


def test_shared_kl_buckets_the_tokens_only_one_side_has():
    s, t = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 1.5, -1.0, 0.0]])
    vocab = SharedVocab(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([2]), torch.tensor([2, 3]))
    p, q = t.softmax(-1)[0], s.softmax(-1)[0]
    outcomes_p = [p[1], p[0], p[2] + p[3]]
    outcomes_q = [q[0], q[1], q[2]]
    by_hand = sum(a * (a / b).log() for a, b in zip(outcomes_p, outcomes_q))
    assert torch.allclose(shared_kl(s, t, vocab), by_hand, atol=1e-6)
    # ULD on the rest: student [q2] against teacher [p2, p3], sorted and padded
    rest_t = torch.stack([p[2], p[3]]).sort(descending=True).values
    assert torch.allclose(uld(s, t, vocab), (q[2] - rest_t[0]).abs() + rest_t[1], atol=1e-6)
    assert torch.allclose(sorted_wasserstein(torch.tensor([0.1, 0.7, 0.2]), torch.tensor([0.7, 0.2, 0.1])),
                          torch.tensor(0.0))


def _bpe_tokenizer(path, corpus: str):
    """A byte-level BPE teacher tokenizer trained on the corpus (whole words as tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus.splitlines(), trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(path)
    return fast


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    root = tmp_path_factory.mktemp("cross_vocab")
    corpus = word_corpus(100)
    (root / "corpus.txt").write_text(corpus)
    (root / "teacher").mkdir()
    tok = _bpe_tokenizer(root / "teacher", corpus)
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=len(tok)), seed=0), root / "teacher",
               tokenizer=False)
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=128), seed=1), root / "student")
    return root


def test_positions_align_where_both_have_read_the_same_text(models):
    from transformers import AutoTokenizer

    s_tok, t_tok = AutoTokenizer.from_pretrained(models / "student"), AutoTokenizer.from_pretrained(models / "teacher")
    shared = shared_vocab(s_tok, t_tok)
    assert 0 < shared.size < len(s_tok) and len(shared.teacher_rest) > 0  # letters shared, words only in the teacher
    text = "the cat sat on a mat."
    ids = torch.tensor([s_tok(text, add_special_tokens=False)["input_ids"]])
    t_ids, attention, t_pos = SequenceAligner(s_tok, t_tok).teacher_inputs(ids)
    assert t_tok.decode(t_ids[0][attention[0] > 0]) == text
    assert t_ids.shape[1] < ids.shape[1]  # whole words: fewer teacher tokens
    pieces = [t_tok.decode(t_ids[0, : j + 1]) for j in range(t_ids.shape[1])]
    texts = token_texts(s_tok)  # the tiny student's own decode puts spaces between its tokens

    def read(i):
        return "".join(texts[t] for t in ids[0, : i + 1].tolist())

    for i, j in enumerate(t_pos[0].tolist()):
        if j >= 0:  # both have read the same characters
            assert read(i) == pieces[j], (i, j)
    aligned = [read(i) for i, j in enumerate(t_pos[0].tolist()) if j >= 0]
    assert "the" in aligned and "the cat" in aligned and "the cat sat on a" in aligned


def _config(root, losses, **extra):
    return config_from_dict({"teacher": str(root / "teacher"), "student": str(root / "student"),
                             "data": str(root / "corpus.txt"), "losses": losses,
                             "training": {"max_steps": 10, "batch_size": 4, "seq_length": 32,
                                          "learning_rate": 1e-2, "device": "cpu", "seed": 0, "eval_every": 10}}
                            | extra)


def test_a_teacher_of_another_vocabulary_trains_the_student(models, tmp_path):
    events, _ = run_job(distill(_config(models, {"forward_kl": 1.0, "uld": 1.0}), tmp_path / "out", smoke=False))
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert len(steps) == 10 and steps[-1].losses["forward_kl"] < steps[0].losses["forward_kl"]
    evals = [e for e in events if isinstance(e, EvalStep)]
    # whole-word teacher tokens: only the student positions at word ends align (about one in four)
    assert 0.2 < evals[-1].losses["aligned_share"] < 0.5


def test_cross_vocabulary_refusals(models, tmp_path):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    with pytest.raises(InputError, match=r"different vocabularies \(.*shared\): use forward_kl, uld and ce across them, not jsd"):
        run_job(distill(_config(models, {"jsd": 1.0}), tmp_path / "a"))
    from fusion_gui.engine.distill.teacher_capture import capture_teacher

    with pytest.raises(InputError, match="uses another vocabulary than the student .*train with the live teacher"):
        run_job(capture_teacher(_config(models, {"forward_kl": 1.0}), tmp_path / "cache", 8))
    # a teacher whose tokens are all unlike the student's: nothing can be aligned
    words = {f"\u4e00{i}": i for i in range(40)}
    tok = Tokenizer(tok_models.WordLevel(words | {"[UNK]": 40}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "alien").mkdir()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "alien")
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=41), seed=2), tmp_path / "alien",
               tokenizer=False)
    config = config_from_dict({"teacher": str(tmp_path / "alien"), "student": str(models / "student"),
                               "data": str(models / "corpus.txt"), "losses": {"forward_kl": 1.0}})
    with pytest.raises(InputError, match="share no token"):
        run_job(distill(config, tmp_path / "b"))
    assert not any((tmp_path / name).exists() for name in ("a", "b", "cache"))


def test_overlap_sentence_names_both_sizes_and_the_shared_tokens(models):
    from fusion_gui.engine.distill.vocab_overlap import vocab_overlap

    gen = vocab_overlap(str(models / "teacher"), str(models / "student"))
    with pytest.raises(StopIteration) as stop:
        next(gen)
    overlap = stop.value.value
    assert 0 < overlap.shared_by_text < overlap.student_size == 128
    assert overlap.comparison.common_size < overlap.comparison.union_size
    assert overlap.sentence().startswith(f"Different vocabularies: the teacher has {overlap.teacher_size:,} tokens")


def test_a_teacher_whose_vocabulary_is_a_superset_is_used(models, tmp_path):
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer

    # the student's 100 tokens are the first 100 of the teacher's 128: every position aligns, every token is shared
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=100), seed=3), tmp_path / "small",
               tokenizer=False)
    write_tiny_tokenizer(tmp_path / "small", 100)
    save_model(build_model(tiny_config("llama", layers=1, hidden=32, vocab=128), seed=4), tmp_path / "big")
    config = config_from_dict({"teacher": str(tmp_path / "big"), "student": str(tmp_path / "small"),
                               "data": str(models / "corpus.txt"), "losses": {"forward_kl": 1.0},
                               "training": {"max_steps": 2, "batch_size": 4, "seq_length": 32, "device": "cpu",
                                            "eval_every": 2}})
    events, _ = run_job(distill(config, tmp_path / "out", smoke=False))
    held_out = [e for e in events if isinstance(e, EvalStep)][-1].losses
    assert held_out["aligned_share"] == 1.0 and held_out["kl_teacher"] > 0
