"""Repo references: `org/name` and `org/name@revision`, parsed in this one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fusion_gui.engine.errors import InputError

# The Hub's own rule for a repo id (huggingface_hub validates the same): one optional namespace, then a name
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_REPO_ID = re.compile(rf"^(?:{_PART}/)?{_PART}$")


@dataclass(frozen=True)
class RepoRef:
    """A model on the Hub: its repo id and, when the user named one, a branch, tag or commit."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id

    @property
    def page_url(self) -> str:
        """The repo's page on the Hub (where a gated repo's access is requested)."""
        from fusion_gui.engine.hub.connection import endpoint

        return f"{endpoint()}/{self.repo_id}"


def split_revision(text: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev'); no '@' (or nothing after it) -> (text, None)."""
    repo, sep, rev = str(text).strip().partition("@")
    return (repo, rev or None) if sep else (str(text).strip(), None)


def looks_like_repo_id(text: str) -> bool:
    """True for text shaped like 'org/name' or 'org/name@rev' (a path like './x' or '/x/y' is not)."""
    repo, _ = split_revision(text)
    return bool(_REPO_ID.match(repo)) and ".." not in repo and not repo.endswith((".", "-"))


def parse_repo_ref(text: str) -> RepoRef:
    """'org/name' or 'org/name@revision' -> RepoRef; InputError in one sentence for anything else."""
    text = str(text or "").strip()
    if not text:
        raise InputError("No repo id given: write it as org/name or org/name@revision.")
    if not looks_like_repo_id(text):
        raise InputError(f"'{text}' is not a Hub repo id: write it as org/name or org/name@revision "
                         f"(letters, digits, '-', '_' and '.').")
    repo, revision = split_revision(text)
    return RepoRef(repo, revision)
