"""huggingface_hub's errors as the one sentence a user reads (InputError: the CLI exits 2)."""

from __future__ import annotations

import errno
from contextlib import contextmanager

from fusion_gui.engine.errors import Cancelled, FusionError, InputError
from fusion_gui.engine.hub.connection import endpoint

LOGIN = "log in with `hf auth login` or set HF_TOKEN"
KEPT = "finished files are kept, so running it again continues where it stopped"


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def _network_error(err: BaseException) -> bool:
    try:
        import httpx2
    except ImportError:  # an older huggingface_hub on httpx or requests: judged by the name
        return type(err).__name__ in ("ConnectError", "ConnectionError", "ReadTimeout", "ReadError",
                                      "RemoteProtocolError", "TimeoutException", "ConnectTimeout")
    return isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError))


def hub_error_sentence(err: BaseException, what: str, file: str | None = None) -> str | None:
    """The sentence for a Hub failure while fetching `what` (a repo reference), or None when `err` is
    not one the Hub or the network caused."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    from fusion_gui.engine.hub.refs import split_revision

    repo, revision = split_revision(what)
    page = f"{endpoint()}/{repo}"
    if isinstance(err, LocalEntryNotFoundError) and err.__cause__ is not None:  # the library wraps the HEAD's error
        inner = hub_error_sentence(err.__cause__, what, file)
        if inner is not None:
            return inner
    if isinstance(err, GatedRepoError):
        return (f"'{repo}' is a gated model and this account has no access yet: request it at {page}, "
                f"then {LOGIN}.")
    if isinstance(err, RevisionNotFoundError):
        return (f"'{repo}' has no revision '{revision}': check the branch, tag or commit "
                f"(the list is at {page}/tree/main).")
    if isinstance(err, EntryNotFoundError) and not isinstance(err, LocalEntryNotFoundError):
        return f"'{what}' has no file '{file or 'asked for'}' on the Hub."
    if isinstance(err, RepositoryNotFoundError):
        return (f"There is no model '{repo}' on the Hub ({endpoint()}), or it is private: check the "
                f"spelling, or {LOGIN} with an account that can see it.")
    if isinstance(err, OfflineModeIsEnabled) or (isinstance(err, LocalEntryNotFoundError)
                                                 and "offline" in str(err).lower()):
        return f"HF_HUB_OFFLINE is set, so '{what}' cannot be fetched from the Hub; unset it to download."
    if isinstance(err, HfHubHTTPError) and _status(err) == 401:
        return f"The Hub refused the Hugging Face token (expired or invalid): {LOGIN} with a valid one."
    if isinstance(err, HfHubHTTPError) and _status(err) == 403:
        return (f"The Hub refused access to '{repo}' (403): the token lacks the permission; {LOGIN} "
                f"with a token that has it.")
    if isinstance(err, HfHubHTTPError):
        return f"The Hub answered {_status(err) or 'an error'} for '{what}': {str(err).splitlines()[0]}"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"The disk holding the Hugging Face cache is full while fetching '{what}'; free space, then {KEPT}."
    if (isinstance(err, OSError) and "Consistency check failed" in str(err)) or type(err).__name__ in (
            "RemoteProtocolError", "ReadError"):  # the line went dead mid-file, after the library's retries
        return f"The connection to the Hub dropped while downloading {file or what}; {KEPT}."
    if _network_error(err) or isinstance(err, LocalEntryNotFoundError):
        during = f" while downloading {file}" if file else ""
        return (f"Cannot reach the Hub at {endpoint()}{during} ({type(err).__name__}): check the network; "
                f"{KEPT}.")
    return None


@contextmanager
def hub_errors(what: str, file: str | None = None):
    """Turn a Hub or network failure inside the block into InputError; our own errors pass as they are."""
    try:
        yield
    except (FusionError, Cancelled):
        raise
    except Exception as err:  # noqa: BLE001 - mapped to a sentence, or re-raised untouched
        sentence = hub_error_sentence(err, what, file)
        if sentence is None:
            raise
        raise InputError(sentence) from err
