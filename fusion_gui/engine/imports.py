"""Import the engine's heavy dependencies once, on one thread, before any job runs.

transformers loads its classes lazily; two threads that reach `from transformers import
AutoTokenizer` at the same moment (a merge and the pre-flight) can see a half-built module and fail
with "cannot import name 'AutoTokenizer'". Every job calls import_engine_dependencies() first: the
first caller imports under a lock, the others wait for it, and later calls return at once.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_done = False


def _import_all() -> None:
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import (  # noqa: F401
        AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase,
    )


def import_engine_dependencies() -> None:
    global _done
    if _done:
        return
    with _lock:
        if not _done:
            _import_all()
            # What was just imported lives as long as the process; frozen, the cyclic collector skips its
            # ~270k objects: a full collection (the app runs one on the GUI thread as each job starts) took
            # 1.3 s with them on a busy 2-core machine, under 1 ms without. Later garbage is collected as before.
            gc.freeze()
            _done = True
