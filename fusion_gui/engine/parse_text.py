"""Read a user's file and parse its YAML or JSON, every failure an InputError naming the file.

The parsers raise more than their own error type on hostile input: PyYAML a ValueError for a date
like 2019-02-30, both a RecursionError for deeply nested brackets, decoding a UnicodeDecodeError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fusion_gui.engine.errors import InputError


def read_text(path: Path, what: str) -> str:
    """The file's UTF-8 text; `what` names it in the error ("Recipe file", "Distill config")."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} '{path}' is not UTF-8 text (byte {err.start} cannot be read).") from None
    except OSError as err:
        raise InputError(f"Cannot read {what.lower()} '{path}': {err.strerror or err}.") from None


def load_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, with every parser failure as one InputError sentence about `where`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{where} is not valid YAML{line}: {problem}.") from None
    except RecursionError:
        raise InputError(f"{where} nests lists or mappings too deeply to read.") from None
    except (ValueError, TypeError, OverflowError) as err:  # e.g. a date such as 2019-02-30
        raise InputError(f"{where} has a value YAML cannot read: {err}.") from None


def load_json(raw: bytes | str, where: str) -> Any:
    """json.loads, with a parser failure (bad JSON, bad UTF-8, too deep) as one InputError sentence."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError(f"{where} nests JSON too deeply to read.") from None
    except ValueError as err:
        raise InputError(f"{where} is not valid JSON ({err}).") from None


def jsonl_lines(path: Path):
    """(line number, parsed value) for each non-empty line of a JSONL file; bad JSON is an InputError
    naming the line. The callers check each value's shape themselves."""
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"Line {number} of '{path}' is not valid JSON: {err.msg}.") from err
