"""A recipe's chat_template reaches the output tokenizer: built-in names, auto, a written-out template."""

from __future__ import annotations

import shutil

import pytest
import yaml
from transformers import AutoTokenizer

from fusion_gui.engine.merge.chat_template import BUILTIN
from fusion_gui.engine.synthetic_models import write_tiny_tokenizer

TOKENIZER_DIR = None  # set by the tiny_tokenizer fixture

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]


def _recipe(tmp_path, models, **extra) -> str:
    data = {"merge_method": "linear", "models": [{"model": str(m), "parameters": {"weight": 1.0}} for m in models],
            "dtype": "float32", **extra}
    path = tmp_path / "recipe.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _render(template: str | None, messages=CHAT, generation_prompt=True, tokenizer_dir=None) -> str:
    """The chat as text, through transformers' own renderer; bos is <s> and eos </s>."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or TOKENIZER_DIR)
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


@pytest.fixture(scope="module", autouse=True)
def tiny_tokenizer(tmp_path_factory):
    global TOKENIZER_DIR
    TOKENIZER_DIR = tmp_path_factory.mktemp("tokenizer")
    write_tiny_tokenizer(TOKENIZER_DIR, 200)


def test_builtin_templates_render_each_format_as_written_by_hand():
    assert _render(BUILTIN["chatml"]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n")
    assert _render(BUILTIN["llama3"]) == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nbye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert _render(BUILTIN["mistral"], generation_prompt=False) == (
        "<s> [INST] Be brief.\n\nhi [/INST] hello</s> [INST] bye [/INST]")
    assert _render(BUILTIN["alpaca"]) == (
        "Be brief.\n\n### Instruction:\nhi\n\n### Response:\nhello\n\n### Instruction:\nbye\n\n### Response:\n")
    assert _render(BUILTIN["exaone"]) == (
        "[|system|]Be brief.[|endofturn|]\n[|user|]hi\n[|assistant|]hello[|endofturn|]\n[|user|]bye\n[|assistant|]")
    with pytest.raises(Exception, match="roles must alternate"):
        _render(BUILTIN["mistral"], CHAT[:2] + CHAT[3:])


def test_a_builtin_name_is_saved_with_the_copied_tokenizer(llama_family, tmp_path, run_cli):
    code, _, err = run_cli("merge", _recipe(tmp_path, llama_family, chat_template="chatml"), tmp_path / "out")
    assert code == 0, err
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.chat_template == BUILTIN["chatml"]
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(llama_family[0]))  # the same vocabulary


def test_auto_takes_the_template_most_models_share_and_a_written_template_is_kept(llama_family, tmp_path,
                                                                                   run_cli):
    models = []
    for path, template in zip(llama_family, (BUILTIN["alpaca"], BUILTIN["chatml"], BUILTIN["chatml"])):
        copy = shutil.copytree(path, tmp_path / path.name)
        tokenizer = AutoTokenizer.from_pretrained(copy)
        tokenizer.chat_template = template
        tokenizer.save_pretrained(copy)
        models.append(copy)
    code, _, err = run_cli("merge", _recipe(tmp_path, models, chat_template="auto"), tmp_path / "auto")
    assert code == 0, err
    assert AutoTokenizer.from_pretrained(tmp_path / "auto").chat_template == BUILTIN["chatml"]

    written = "{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}{% endfor %}"
    code, _, err = run_cli("merge", _recipe(tmp_path, models, chat_template=written, tokenizer_source="union"),
                           tmp_path / "written")
    assert code == 0, err
    assert _render(None, CHAT[:2], False, tmp_path / "written") == "<<system>>Be brief.<<user>>hi"


def test_auto_without_templates_warns_and_an_unknown_name_is_refused(llama_family, tmp_path, run_cli):
    code, out, err = run_cli("merge", _recipe(tmp_path, llama_family, chat_template="auto"), tmp_path / "none")
    assert code == 0, err
    assert "found no chat template" in out + err
    assert AutoTokenizer.from_pretrained(tmp_path / "none").chat_template is None

    code, _, err = run_cli("merge", _recipe(tmp_path, llama_family, chat_template="chatlm"), tmp_path / "bad")
    assert code == 2
    assert "Unknown chat_template 'chatlm'" in err and not (tmp_path / "bad").exists()
