"""A recipe's `chat_template`, as mergekit reads it: `auto` (the template most of the input models
share), a built-in name, or a Jinja template written out in the recipe.

The built-in templates are written here from each format's published description (not copied), so
that `chatml`, `llama3`, `mistral`, `alpaca` and `exaone` mean what they mean in mergekit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader

BUILTIN = {
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama3": (
        "{% for message in messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.first %}{{ bos_token }}{% endif %}{{ content }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    ),
    "mistral": (
        "{%- if messages[0]['role'] == 'system' %}"
        "{%- set system_message = messages[0]['content'] %}{%- set chat = messages[1:] %}"
        "{%- else %}{%- set chat = messages %}{%- endif %}"
        "{{- bos_token }}"
        "{%- for message in chat %}"
        "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{- raise_exception('After an optional system message, roles must alternate user/assistant.') }}"
        "{%- endif %}"
        "{%- if message['role'] == 'user' %}"
        "{%- if loop.first and system_message is defined %}"
        "{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
        "{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}"
        "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}"
        "{%- else %}{{- raise_exception('Only user and assistant roles, after an optional system message.') }}"
        "{%- endif %}"
        "{%- endfor %}"
    ),
    "alpaca": (
        "{%- set system = messages | selectattr('role', 'equalto', 'system') | list %}"
        "{%- if system %}{{- (system | last).content | trim + '\\n\\n' }}{%- endif %}"
        "{%- for message in messages %}"
        "{%- set heading = {'user': 'Instruction', 'assistant': 'Response', 'user_context': 'Input'}"
        ".get(message['role']) %}"
        "{%- if heading %}"
        "{{- '### ' + heading + ':\\n' + message['content'] | trim }}{%- if not loop.last %}{{- '\\n\\n' }}{%- endif %}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt and messages[-1]['role'] != 'assistant' %}{{- '\\n\\n### Response:\\n' }}"
        "{%- endif %}"
    ),
    "exaone": (
        "{%- for message in messages %}"
        "{%- if loop.first and message['role'] != 'system' %}{{- '[|system|][|endofturn|]\\n' }}{%- endif %}"
        "{{- '[|' + message['role'] + '|]' + message['content'] }}"
        "{%- if message['role'] == 'user' %}{{- '\\n' }}{%- else %}{{- '[|endofturn|]\\n' }}{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '[|assistant|]' }}{%- endif %}"
    ),
}


def _model_template(reader: ModelReader) -> str | None:
    """The chat template a model's tokenizer carries, or None (no tokenizer, or one without a template)."""
    from fusion_gui.engine.merge.model_tokenizer import load_tokenizer

    try:
        template = load_tokenizer(reader).chat_template
    except InputError:
        return None
    if isinstance(template, dict):  # named templates: mergekit takes the default one
        template = template.get("default")
    return template.strip() if template else None


def resolve_chat_template(setting: str | None, readers: Iterable[ModelReader]) -> tuple[str | None, list[str]]:
    """(the Jinja template to give the output tokenizer or None, warnings), checked at plan time."""
    if not setting:
        return None, []
    if setting == "auto":  # the template most input models share
        found = [t for t in (_model_template(r) for r in readers) if t]
        if not found:
            return None, ["chat_template: auto found no chat template in any input model; none is set."]
        return Counter(found).most_common(1)[0][0], []
    if setting in BUILTIN:
        return BUILTIN[setting], []
    if "{" in setting and len(setting) >= 20:  # a template written out in the recipe
        return setting, []
    raise InputError(f"Unknown chat_template '{setting}'; use auto, one of {', '.join(BUILTIN)}, "
                     f"or a Jinja template.")
