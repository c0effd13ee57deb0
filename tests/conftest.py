import atexit
import os
import shutil
import sys
import tempfile

import pytest

pytest_plugins = ["fixtures.hub_server"]  # the fake Hub (`hub` fixture), for engine, CLI and dialog tests

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "FUSION_GUI_CACHE" not in os.environ:  # estimated Fishers are cached: not in the user's cache folder
    os.environ["FUSION_GUI_CACHE"] = tempfile.mkdtemp(prefix="fusion-gui-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FUSION_GUI_CACHE"], True)
if "FUSION_GUI_DATA_DIR" not in os.environ:  # runs are recorded in a history: not in the user's data folder
    os.environ["FUSION_GUI_DATA_DIR"] = tempfile.mkdtemp(prefix="fusion-gui-test-data-")
    atexit.register(shutil.rmtree, os.environ["FUSION_GUI_DATA_DIR"], True)


def pytest_collection_modifyitems(items):
    """Markers no test can forget: every tests/test_ui_*.py needs Qt (gui); every test of the full demo models
    waits for their build, minutes of training unless pytest's cache has it (slow). `make test-fast` skips both."""
    for item in items:
        if item.path.name.startswith("test_ui_"):
            item.add_marker(pytest.mark.gui)
        if "demo_models" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def llama_family(tmp_path_factory):
    """[base, ft1, ft2]: tiny Llama checkpoints (4 layers), saved as sharded safetensors."""
    from fusion_gui.engine.synthetic_models import build_family

    return build_family(tmp_path_factory.mktemp("llama"), "llama", n_finetunes=2)


@pytest.fixture(scope="session")
def gpt2_family(tmp_path_factory):
    """[base, ft1, ft2]: tiny GPT-2 checkpoints (4 layers), saved as sharded safetensors."""
    from fusion_gui.engine.synthetic_models import build_family

    return build_family(tmp_path_factory.mktemp("gpt2"), "gpt2", n_finetunes=2)


@pytest.fixture
def run_cli(monkeypatch):
    """Run `fusion-gui ARGS...` in-process; returns (exit code, stdout, stderr)."""
    import io

    from fusion_gui import cli

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        code = cli.main([str(a) for a in args])
        monkeypatch.undo()
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a busy 2-core machine: torch's spinning 2-thread pool ran up to 15x slower than one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
