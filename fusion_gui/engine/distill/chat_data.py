"""Chat and instruction data: JSONL rows of `messages` (rendered with the tokenizer's chat template) or
`prompt`/`completion`, encoded as (ids, loss mask) so the loss covers assistant / completion tokens only.

A chat template that marks assistant text with `{% generation %}` gives the mask itself
(`return_assistant_tokens_mask`); for any other template each assistant turn is located by rendering
the conversation up to it (with the generation prompt) and up to its end, and the tokens whose
characters fall between the two renders carry the loss.
"""

from __future__ import annotations

import re
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import jsonl_lines

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _rows(path: Path):
    """(line number, object) for every non-empty line."""
    for number, row in jsonl_lines(path):
        if not isinstance(row, dict):
            raise InputError(f"Line {number} of '{path}' is not a JSON object.")
        yield number, row


def jsonl_kind(path) -> str:
    """'chat' (rows with messages), 'instruction' (prompt and completion) or 'text', from the first row."""
    for _, row in _rows(Path(path)):
        if "messages" in row:
            return "chat"
        if "prompt" in row and "completion" in row:
            return "instruction"
        return "text"
    return "text"


def _template(tokenizer) -> str | None:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: the default one renders conversations
        template = template.get("default")
    return template or None


def _check_messages(messages, where: str) -> list[dict]:
    if (not isinstance(messages, list) or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in messages)):
        raise InputError(f"{where} needs 'messages' as a list of objects with 'role' and 'content'.")
    return messages


def _render(tokenizer, messages: list[dict], where: str, **kwargs) -> str:
    if not messages:
        return ""
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except Exception as err:  # jinja's TemplateError and templates' own raise_exception
        raise InputError(f"The chat template cannot render {where}: {err}.") from err


def _by_spans(tokenizer, messages: list[dict], first: int, where: str) -> tuple[list[int], list[bool]]:
    """Ids and mask of a conversation whose assistant turns from index `first` on carry the loss."""
    text = _render(tokenizer, messages, where)
    spans = []
    for i, message in enumerate(messages):
        if i < first or message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], where, add_generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], where)
        if not (text.startswith(upto) and upto.startswith(before)):
            raise InputError(f"The chat template renders the turns of {where} differently depending on what "
                             f"follows them, so its assistant tokens cannot be located.")
        spans.append((len(before), len(upto)))
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        mask = [any(a <= start < b for a, b in spans) for start, _ in enc["offset_mapping"]]
        return list(enc["input_ids"]), mask
    ids: list[int] = []
    mask: list[bool] = []
    done = 0
    for a, b in spans:  # a slow tokenizer has no offsets: encode the pieces one after another
        for piece, counts in ((text[done:a], False), (text[a:b], True)):
            piece_ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
            ids += piece_ids
            mask += [counts] * len(piece_ids)
        done = b
    tail = tokenizer(text[done:], add_special_tokens=False)["input_ids"]
    return ids + tail, mask + [False] * len(tail)


def _chat_example(tokenizer, messages: list[dict], where: str) -> tuple[list[int], list[bool]]:
    if _GENERATION_TAG.search(_template(tokenizer) or ""):
        try:
            out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
        except Exception as err:
            raise InputError(f"The chat template cannot render {where}: {err}.") from err
        return list(out["input_ids"]), [bool(m) for m in out["assistant_masks"]]
    return _by_spans(tokenizer, messages, 0, where)


def _instruction_example(tokenizer, prompt, completion, where: str) -> tuple[list[int], list[bool]]:
    if isinstance(prompt, str) and isinstance(completion, str):
        ids = list(tokenizer(prompt)["input_ids"])  # the prompt as an input starts: with BOS where it adds one
        eos = tokenizer.eos_token_id
        if ids and eos is not None and ids[-1] == eos:
            ids.pop()  # a tokenizer that also appends EOS: the completion ends the example instead
        tail = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
        tail += [eos] if eos is not None else []
        return ids + tail, [False] * len(ids) + [True] * len(tail)
    if isinstance(prompt, list) and isinstance(completion, list):  # conversational prompt and completion
        if _template(tokenizer) is None:
            raise InputError(f"{where} holds chat messages, but the student's tokenizer has no chat template "
                             f"to render them with.")
        prompt = _check_messages(prompt, where)
        messages = prompt + _check_messages(completion, where)
        if not any(m["role"] == "assistant" for m in messages[len(prompt):]):
            raise InputError(f"{where} has no assistant turn in its completion: there is nothing to train on.")
        return _by_spans(tokenizer, messages, len(prompt), where)
    raise InputError(f"{where} needs 'prompt' and 'completion' both as text or both as lists of messages.")


def read_chat_examples(path, tokenizer) -> list[tuple[list[int], list[bool]]]:
    """(ids, loss mask) per row of a chat (`messages`) or instruction (`prompt`/`completion`) JSONL."""
    path = Path(path)
    kind = jsonl_kind(path)
    examples = []
    for number, row in _rows(path):
        where = f"line {number} of '{path}'"
        if kind == "chat":
            if "messages" not in row:
                raise InputError(f"Line {number} of '{path}' has no 'messages' (the first line has).")
            messages = _check_messages(row["messages"], where)
            if _template(tokenizer) is None:
                raise InputError(f"Data '{path}' holds chat messages (line {number}), but the student's tokenizer "
                                 f"has no chat template to render them with.")
            if not any(m["role"] == "assistant" for m in messages):
                raise InputError(f"Line {number} of '{path}' has no assistant turn in its messages: there is "
                                 f"nothing to train on.")
            examples.append(_chat_example(tokenizer, messages, where))
        else:
            if "prompt" not in row or "completion" not in row:
                raise InputError(f"Line {number} of '{path}' needs 'prompt' and 'completion' (the first line has).")
            examples.append(_instruction_example(tokenizer, row["prompt"], row["completion"], where))
    if not examples:
        raise InputError(f"Data '{path}' holds no rows.")
    return examples
