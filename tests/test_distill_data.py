"""Packing encodes each document as the tokenizer would (BOS kept, EOS between documents); chat and
instruction rows carry loss on the answers only; bad chat data is refused in one sentence."""

from __future__ import annotations

import json

import pytest

from fusion_gui.engine.distill.data import Blocks, load_blocks, pack, pack_examples, read_examples
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.methods.fisher_prepare import FisherSettings, calibration_blocks

CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHATML_GEN = ("{% for m in messages %}<|{{ m['role'] }}|>{% if m['role'] == 'assistant' %}{% generation %}"
              "{{ m['content'] }}</s>{% endgeneration %}{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tokenizer(bos: bool, template: str | None = None):
    """Characters as tokens, ids 0-2 unk/BOS/EOS; with `bos` it starts every input with BOS (Llama-style)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"] + [chr(c) for c in range(32, 127)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(w, special=True, normalized=False) for w in words[:6]])
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.chat_template = template
    return fast


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("bos", [True, False])
def test_each_document_packs_as_the_tokenizer_encodes_it(bos):
    tok = tokenizer(bos)
    head = [1] if bos else []
    expected = head + ids(tok, "ab") + [2] + head + ids(tok, "cde") + [2]
    blocks = pack(["ab", "cde"], tok, len(expected))
    assert blocks.tolist() == [expected]


@pytest.mark.parametrize("bos", [True, False])
def test_fisher_calibration_blocks_start_documents_the_same_way(tmp_path, bos):
    (tmp_path / "cal.txt").write_text("abc\ndef\n")
    blocks, _ = calibration_blocks(FisherSettings(str(tmp_path / "cal.txt"), 1, 4), tokenizer(bos))
    assert blocks[0].tolist() == ([1] if bos else []) + ids(tokenizer(bos), "abc") + ([] if bos else [2])


def test_perplexity_stream_starts_like_an_input():
    from fusion_gui.engine.distill.data import leading_special_tokens

    assert leading_special_tokens(tokenizer(True)) == [1]
    assert leading_special_tokens(tokenizer(False)) == []


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


CHAT = [{"role": "system", "content": "be"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "sure"}]


@pytest.mark.parametrize("template", [CHATML, CHATML_GEN], ids=["spans", "generation-tag"])
def test_chat_loss_covers_assistant_turns_only(tmp_path, template):
    tok = tokenizer(False, template)
    (example_ids, mask), = read_examples(_jsonl(tmp_path / "c.jsonl", [{"messages": CHAT}]), "text", tok)
    assert tok.decode(example_ids) == tok.apply_chat_template(CHAT, tokenize=False)
    trained = tok.decode([i for i, m in zip(example_ids, mask) if m])
    assert trained == "yo</s>sure</s>"


def test_instruction_rows_train_on_the_completion(tmp_path):
    tok = tokenizer(True)
    path = _jsonl(tmp_path / "i.jsonl", [{"prompt": "Q: 1+1?", "completion": " 2"}] * 40)
    (example_ids, mask), *_ = read_examples(path, "text", tok)
    assert example_ids[0] == 1 and example_ids[-1] == 2  # BOS first, EOS ends the completion
    assert tok.decode([i for i, m in zip(example_ids, mask) if m], skip_special_tokens=False) == " 2</s>"
    train, held = load_blocks(path, "text", tok, 16, 0.1, 0)
    # packing keeps every label on its token: the labels that count are exactly the completions' tokens
    for blocks in (train, held):
        counted = blocks.labels != -100
        assert (blocks.labels[counted] == blocks.blocks[counted]).all()
    per_row = sum(mask)
    assert train.loss_tokens + held.loss_tokens <= 40 * per_row
    assert train.loss_tokens > 0


def test_packed_labels_follow_the_masks():
    blocks, labels = pack_examples([([5, 6, 7], [False, True, True]), ([8, 9, 10], [False, False, True])], 3)
    assert blocks.tolist() == [[5, 6, 7], [8, 9, 10]]
    assert labels.tolist() == [[-100, 6, 7], [-100, -100, 10]]
    assert Blocks(blocks, labels).loss_tokens == 3


def test_chat_without_template_is_refused(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"messages": CHAT}])
    with pytest.raises(InputError, match=r"line 1\).*no chat template") as err:
        read_examples(path, "text", tokenizer(False))
    assert str(err.value).count(". ") == 0


def test_messages_without_assistant_turn_is_refused(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", [{"messages": CHAT}, {"messages": CHAT[:2]}])
    with pytest.raises(InputError, match=r"Line 2 of .*c\.jsonl' has no assistant turn"):
        read_examples(path, "text", tokenizer(False, CHATML))


def test_losses_compare_every_output_row_both_models_have(tmp_path):
    """Padded rows no text uses still take probability at inference: the student must learn them too."""
    from fusion_gui.engine.distill.data import check_tokenizers
    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config, write_tiny_tokenizer

    for name, rows in (("teacher", 144), ("student", 144), ("narrow", 136)):
        save_model(build_model(tiny_config("llama", layers=1, hidden=16, vocab=rows), seed=0), tmp_path / name,
                   tokenizer=False)
        write_tiny_tokenizer(tmp_path / name, 128)
    assert check_tokenizers(str(tmp_path / "teacher"), str(tmp_path / "student"))[1] == 144
    assert check_tokenizers(str(tmp_path / "teacher"), str(tmp_path / "narrow"))[1] == 136
