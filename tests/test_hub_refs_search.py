"""Repo references and the Hub search (against the fake Hub)."""

from __future__ import annotations

import pytest

from fusion_gui.engine.errors import InputError


@pytest.mark.parametrize("text, repo, rev", [
    ("org/name", "org/name", None), (" org/name@v1.0 ", "org/name", "v1.0"), ("gpt2", "gpt2", None),
    ("org/name@0123456789abcdef0123456789abcdef01234567", "org/name", "0123456789abcdef0123456789abcdef01234567"),
])
def test_parse_repo_ref(text, repo, rev):
    from fusion_gui.engine.hub import parse_repo_ref

    ref = parse_repo_ref(text)
    assert (ref.repo_id, ref.revision) == (repo, rev)
    assert str(ref) == text.strip()


@pytest.mark.parametrize("text", ["", "./folder", "/abs/path", "a/b/c", "org/../x", "org/na me", "~/m"])
def test_not_a_repo_ref(text):
    from fusion_gui.engine.hub import looks_like_repo_id, parse_repo_ref

    assert not looks_like_repo_id(text) if text else True
    with pytest.raises(InputError):
        parse_repo_ref(text)


def test_search_lists_rows_with_downloads_likes_license_gated_size(hub):
    from fusion_gui.engine.hub import search_models

    rows = search_models("org/", limit=3)
    assert [r.repo_id for r in rows] == ["org/ft", "org/base", "org/gated"]
    ft = rows[0]
    assert (ft.downloads, ft.likes, ft.license, ft.gated) == (200, 7, "mit", False) and ft.size_bytes > 0
    assert rows[2].gated
    query = next(p for m, p, _ in hub.requests if p == "/api/models")
    assert query  # one list_models call, no per-model requests
    assert not [p for m, p, _ in hub.requests if p.startswith("/api/models/")]


def test_search_without_network_is_one_sentence(hub, monkeypatch):
    from huggingface_hub import constants

    from fusion_gui.engine.hub import search_models

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the library's backoff between its 5 retries
    with pytest.raises(InputError, match="Cannot reach the Hub"):
        search_models("llama")


@pytest.mark.parametrize("module", ["fusion_gui.engine.hub.remote_reader", "fusion_gui.engine.hub.refs"])
def test_hub_modules_import_first_in_a_fresh_interpreter(module):
    import subprocess
    import sys

    # engine/io's package face imports the opener, which the hub's reader builds on: a cycle shows only
    # when a hub module is the first thing imported
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
