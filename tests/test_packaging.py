"""The packaged app: build it with packaging/build_linux.sh, then run the BUILT binary.

Slow (a PyInstaller build of torch + PySide6 + transformers takes minutes), so it runs only with
FUSION_GUI_PACKAGING_TEST=1. FUSION_GUI_PACKAGING_REUSE=1 packages an existing dist/fusion-gui again
instead of rebuilding it (for iterating on the .deb). Linux only (the .deb and ELF checks).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
APPDIR = DIST / "fusion-gui"
BINARY = APPDIR / "fusion-gui"
SIZE_LIMIT = 850 * 2**20

pytestmark = [
    pytest.mark.packaging,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("FUSION_GUI_PACKAGING_TEST") != "1",
                       reason="set FUSION_GUI_PACKAGING_TEST=1 to build and test the installers"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("dpkg-deb") is None,
                       reason="the Linux packages need Linux and dpkg-deb"),
]


def _version() -> str:
    from fusion_gui import __version__

    return __version__


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    env = dict(os.environ, PYTHON=sys.executable, DEB_COMPRESSION="zstd")
    if os.environ.get("FUSION_GUI_PACKAGING_REUSE") == "1":
        env["SKIP_PYINSTALLER"] = "1"
    start = time.monotonic()
    proc = subprocess.run(["bash", str(ROOT / "packaging" / "build_linux.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)
    print(f"build_linux.sh took {time.monotonic() - start:.0f} s")
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "build_linux.log").write_text(proc.stdout + proc.stderr)  # per-step times
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    version, arch = _version(), _arch()
    return {"deb": DIST / f"fusion-gui_{version}_{arch}.deb",
            "tgz": DIST / f"fusion-gui-{version}-linux-{arch}.tar.gz"}


def _bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No Python anywhere: PATH is an empty folder, no PYTHON* variables, a fresh HOME."""
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    assert shutil.which("python3", path=str(empty_bin)) is None
    return {"PATH": str(empty_bin), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(tmp_path), **extra}


@pytest.mark.timeout(1800)
def test_onedir_is_self_contained_and_trimmed(built):
    assert BINARY.is_file() and os.access(BINARY, os.X_OK)
    size = sum(p.stat().st_size for p in APPDIR.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"onedir size: {size / 2**20:.0f} MiB")
    assert size < SIZE_LIMIT, f"{size / 2**20:.0f} MiB"
    internal = APPDIR / "_internal"
    for unwanted in ("torch/include", "torch/test", "torch/bin/protoc", "PySide6/Qt/translations", "PySide6/Qt/qml",
                     "pytest", "_pytest", "pytestqt", "tkinter", "PyInstaller"):
        assert not (internal / unwanted).exists(), unwanted
    assert [p.name for p in (internal / "torch" / "bin").iterdir()] == ["torch_shm_manager"]  # import torch checks it
    assert list(internal.glob("libpython3*.so*")), "the bundled interpreter is missing"
    assert (internal / "resources" / "fusion-gui.png").is_file()
    # what the offscreen window needs resolves on this machine (from the bundle or the system)
    for lib in ("PySide6/Qt/plugins/platforms/libqoffscreen.so", "PySide6/Qt/lib/libQt6Widgets.so.6"):
        out = subprocess.run(["ldd", str(internal / lib)], capture_output=True, text=True).stdout
        assert "not found" not in out, out


def _debian_package(soname: str) -> str:
    """Debian's library package name for a soname: libxcb-icccm.so.4 -> libxcb-icccm4, libfoo2.so.1 -> libfoo2-1."""
    stem, _, version = soname.partition(".so.")
    return f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """The .deb installed as a user installs it; yields a folder holding only the `fusion-gui` command.

    As root in CI (CI set): `apt-get install ./fusion-gui_*.deb`, which also pulls the Depends, and the
    command is /usr/bin/fusion-gui. Elsewhere: `dpkg -x` into a temporary root (nothing outside it changes);
    its launcher is the packaged one with /opt/fusion-gui moved under that root."""
    bin_dir = tmp_path_factory.mktemp("bin")
    if os.environ.get("CI") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", str(built["deb"].resolve())],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        (bin_dir / "fusion-gui").symlink_to("/usr/bin/fusion-gui")
        yield bin_dir
        subprocess.run(["dpkg", "--remove", "fusion-gui"], check=True)
        return
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(built["deb"]), str(root)], check=True)
    launcher = (root / "usr/bin/fusion-gui").read_text()
    assert "exec /opt/fusion-gui/fusion-gui \"$@\"" in launcher, launcher
    (bin_dir / "fusion-gui").write_text(launcher.replace("/opt/fusion-gui/", f"{root}/opt/fusion-gui/"))
    (bin_dir / "fusion-gui").chmod(0o755)
    yield bin_dir


@pytest.fixture(scope="module")
def user(installed, tmp_path_factory) -> dict[str, str]:
    """A new user's environment: an empty home, XDG folders in it, no Python on PATH, only `fusion-gui`."""
    home = tmp_path_factory.mktemp("home")
    xdg = {name: str(home / sub) for name, sub in (("XDG_DATA_HOME", ".local/share"), ("XDG_CONFIG_HOME", ".config"),
                                                   ("XDG_CACHE_HOME", ".cache"), ("XDG_RUNTIME_DIR", "run"))}
    for folder in xdg.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    os.chmod(xdg["XDG_RUNTIME_DIR"], 0o700)
    assert shutil.which("python3", path=str(installed)) is None and shutil.which("python", path=str(installed)) is None
    return {"PATH": str(installed), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home), **xdg}


def fusion(user: dict[str, str], *args, timeout: int = 600, **extra: str) -> subprocess.CompletedProcess:
    """`fusion-gui ARGS` as typed in a terminal: the command is found on PATH."""
    return subprocess.run(["fusion-gui", *map(str, args)], env={**user, **extra}, cwd=user["HOME"],
                          capture_output=True, text=True, timeout=timeout)


def assert_quiet(proc: subprocess.CompletedProcess) -> None:
    """Only the program's own output: no library warnings, no tracebacks."""
    for bad in ("Unable to retrieve source", "Warning", "warn(", "Traceback"):
        assert bad not in proc.stderr, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def demo_models(user) -> Path:
    return Path(user["XDG_DATA_HOME"]) / "fusion-gui" / "demo-models"


@pytest.fixture(scope="module")
def window_walk(user, demo_models) -> tuple[subprocess.CompletedProcess, Path]:
    """The window, offscreen, clicked through by its scripted walk (fusion_gui/ui/smoke.py): "Try the demo"
    trains the demo models in the new user's data folder, merges them and scores the merge and its inputs
    (the one-click story), then a merge into a folder of ours, compare, recipe, LoRA."""
    assert not demo_models.exists()  # the button builds them: the path a first-time user takes
    out = Path(user["HOME"]) / "walk"
    proc = fusion(user, timeout=1500, QT_QPA_PLATFORM="offscreen", FUSION_GUI_SMOKE=str(out))
    return proc, out


@pytest.mark.timeout(1800)
def test_installed_version_help_and_selftest(user):
    version = fusion(user, "--version")
    assert version.returncode == 0 and version.stdout.strip() == _version(), version.stderr
    help_ = fusion(user, "--help")
    assert help_.returncode == 0 and "merge" in help_.stdout and help_.stderr == "", help_.stderr
    selftest = fusion(user, "--selftest", timeout=300)
    assert selftest.returncode == 0 and "selftest ok" in selftest.stdout, selftest.stdout + selftest.stderr
    assert_quiet(selftest)


@pytest.mark.timeout(1800)
def test_installed_window_try_the_demo_merge_evaluate_compare_recipe_lora(window_walk, demo_models):
    proc, out = window_walk
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("smoke: ")]
    assert [line.split()[1] for line in steps] == ["demo", "evaluate", "merge", "compare", "recipe", "extract-lora",
                                                   "all"], proc.stdout
    assert all(" ok" in line for line in steps), proc.stdout
    assert "Demo models built in" in steps[0] and str(demo_models) in steps[0]
    assert (demo_models / "demo.json").is_file() and (out / "merged" / "model.safetensors").is_file()
    scores = {row["model"]: row for row in csv.DictReader(open(out / "eval.csv"))}
    assert set(scores) == {"demo-merge", "base", "count", "reverse"}  # the demo's own merge and its inputs
    assert float(scores["count"]["count"]) >= 0.8 and float(scores["reverse"]["reverse"]) >= 0.8
    assert "the form holds the saved recipe: True" in steps[4]
    assert (out / "lora" / "adapter_config.json").is_file()
    assert "Traceback" not in proc.stderr and "Unable to retrieve source" not in proc.stderr


@pytest.mark.timeout(1800)
def test_installed_demo_from_the_command_line(window_walk, user, demo_models):
    proc = fusion(user, "demo", timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert f"Reusing the demo models in {demo_models}" in proc.stderr  # the window's build, reused
    table = {line.split()[0]: [int(v.rstrip("%")) for v in line.split()[1:]]
             for line in proc.stdout.splitlines() if line.split() and line.split()[0] in ("count", "demo-merge")}
    assert table["count"][0] >= 80 and min(table["demo-merge"]) >= 40, proc.stdout
    assert_quiet(proc)


@pytest.mark.timeout(1800)
def test_installed_merge_compare_evaluate_extract_lora(window_walk, user, demo_models):
    work = Path(user["HOME"]) / "cli"
    work.mkdir()
    base, count, reverse = (demo_models / name for name in ("base", "count", "reverse"))
    (work / "ties.yml").write_text(
        f"merge_method: ties\nbase_model: {base}\nparameters: {{density: 0.5}}\ndtype: float32\nmodels:\n"
        f"  - {{model: {count}, parameters: {{weight: 0.8}}}}\n  - {{model: {reverse}, parameters: {{weight: 0.8}}}}\n")
    merge = fusion(user, "merge", work / "ties.yml", work / "ties", "--no-progress")
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert merge.stdout.startswith(f"Wrote {work / 'ties'}: ") and merge.stderr == "", merge.stderr  # nothing else
    compare = fusion(user, "diff", count, reverse, "--base", base, "--json")
    assert compare.returncode == 0, compare.stderr
    assert len(json.loads(compare.stdout)["tensors"]) == 21
    evaluate = fusion(user, "eval", work / "ties", count, "--task", "count", "-n", "20", "--csv", work / "e.csv")
    assert evaluate.returncode == 0, evaluate.stderr
    assert [row["model"] for row in csv.DictReader(open(work / "e.csv"))] == ["ties", "count"]
    lora = fusion(user, "extract-lora", count, base, work / "lora", "--rank", "4", "--no-progress")
    assert lora.returncode == 0, lora.stderr
    assert (work / "lora" / "adapter_model.safetensors").is_file()
    for proc in (compare, evaluate, lora):
        assert_quiet(proc)


@pytest.mark.timeout(1800)
def test_installed_search_keeps_its_study_and_resumes(window_walk, user, demo_models):
    """The merge search in the bundle: optuna's SQLite storage (alembic creates the schema from files
    shipped beside the code), CMA-ES from cmaes, in-memory candidates scored on the demo skills."""
    work = Path(user["HOME"]) / "search"
    work.mkdir()
    base, count, reverse = (demo_models / name for name in ("base", "count", "reverse"))
    (work / "search.yml").write_text(
        f"method: task_arithmetic\nbase: {base}\nmodels: [{count}, {reverse}]\n"
        "tune:\n  - {name: weight, scope: model, low: 0.0, high: 1.5, start: 0.8}\n"
        "objectives: [count, reverse]\ncombine: mean\nexamples: 6\nheld_out: 6\n"
        "budget: {trials: 2}\nsampler: cmaes\nseed: 0\n")
    first = fusion(user, "search", work / "search.yml", work / "out")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (work / "out" / "search.sqlite").is_file() and (work / "out" / "best-recipe.yml").is_file()
    more = fusion(user, "search", work / "search.yml", work / "out", "--resume", "--trials", "3")
    assert more.returncode == 0, more.stdout + more.stderr
    rows = list(csv.DictReader(open(work / "out" / "trials.csv")))
    assert len(rows) == 3, rows  # the two trials of the first run were kept, one more was added


@pytest.mark.timeout(1800)
def test_installed_distills_from_a_datasets_folder_and_evaluates(user):
    """Distillation (transformers' Trainer, accelerate, datasets/pyarrow) and evaluation (perplexity and
    generation) in the bundle: modules the analysis cannot see behind transformers' lazy imports."""
    import datasets

    from fusion_gui.engine.synthetic_models import build_model, save_model, tiny_config

    work = Path(user["HOME"]) / "distill"
    words = "the cat sat on a mat while dogs ran far away from home".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(10)) + "." for i in range(300)]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(work / "corpus-ds"))
    (work / "corpus.txt").write_text("\n".join(lines[:40]))
    save_model(build_model(tiny_config("llama", layers=2, hidden=64, vocab=128), seed=0), work / "teacher")
    save_model(build_model(tiny_config("llama", layers=2, hidden=32, vocab=128), seed=1), work / "student")
    (work / "distill.yml").write_text(
        f"teacher: {work / 'teacher'}\nstudent: {work / 'student'}\n"
        f"data: {{path: {work / 'corpus-ds'}, text_field: text}}\nlosses: {{forward_kl: 1.0}}\n"
        "training: {max_steps: 2, batch_size: 4, seq_length: 32, device: cpu}\n")
    proc = fusion(user, "distill", work / "distill.yml", work / "out", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "out" / "config.json").is_file()
    proc = fusion(user, "eval", work / "out", "--text", work / "corpus.txt", "--prompt", "the cat")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "perplexity" in proc.stdout and "[out, greedy] the cat" in proc.stdout


@pytest.mark.timeout(1800)
def test_installed_window_opens_and_closes_on_sigint(user, tmp_path):
    """No-arguments start opens the window; SIGINT closes it properly (run_gui's handler), which
    saves the settings with the window geometry: proof that the MainWindow was built and shown."""
    config = tmp_path / "config"
    env = {**user, "QT_QPA_PLATFORM": "offscreen", "FUSION_GUI_CONFIG_DIR": str(config)}
    log = tmp_path / "gui.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(["fusion-gui"], env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            # offscreen Qt prints this when the window is created and shown; then run_gui installs its
            # SIGINT handler before entering the event loop
            while "propagateSizeHints" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert proc.poll() is None, f"the app exited early ({proc.returncode}):\n{log.read_text()}"
            time.sleep(3)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
    settings = json.loads((config / "settings.json").read_text())
    assert settings["window_geometry"], settings


@pytest.mark.timeout(1800)
def test_deb_layout_and_control(built):
    deb = built["deb"]
    assert deb.is_file()
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True).stdout.split() \
        if shutil.which("ar") else []
    if members:
        assert "data.tar.zst" in members, members
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    paths = {line.split()[-1] if " -> " not in line else line.split()[-3] for line in listing.splitlines()}
    for expected in ("./opt/fusion-gui/fusion-gui", "./opt/fusion-gui/_internal/", "./usr/bin/fusion-gui",
                     "./usr/share/applications/fusion-gui.desktop",
                     "./usr/share/icons/hicolor/256x256/apps/fusion-gui.png"):
        assert expected in paths, expected
    assert not any("/torch/include/" in p or "/Qt/translations/" in p for p in paths)
    launcher = next(line for line in listing.splitlines() if line.endswith("./usr/bin/fusion-gui"))
    assert launcher.startswith("-rwxr-xr-x root/root"), launcher

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert field("Package") == "fusion-gui"
    assert field("Version") == _version()
    assert field("Architecture") == _arch()
    assert int(field("Installed-Size")) > 100_000
    depends = field("Depends")
    for lib in ("libxkbcommon0", "libgl1", "libegl1", "libfontconfig1", "libdbus-1-3", "libxcb-cursor0"):
        assert lib in depends, depends
    # a Qt library or plugin in the bundle that needs a library this machine lacks: Depends must name it
    # (the GTK theme plugin is optional: Qt skips it when GTK is absent, so GTK is only recommended)
    qt = APPDIR / "_internal" / "PySide6" / "Qt"
    for so in [*qt.glob("lib/*.so*"), *qt.glob("plugins/*/*.so")]:
        if so.name == "libqgtk3.so":
            continue
        out = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "not found" in line:
                soname = line.split()[0]
                if not soname.startswith(("libQt6", "libicu")):
                    assert _debian_package(soname) in depends, f"{so.name} needs {soname}; Depends: {depends}"


@pytest.mark.timeout(1800)
def test_deb_desktop_entry_and_launcher(built, tmp_path):
    subprocess.run(["dpkg-deb", "-x", str(built["deb"]), str(tmp_path)], check=True)
    desktop = (tmp_path / "usr/share/applications/fusion-gui.desktop").read_text()
    assert "Exec=fusion-gui" in desktop and "Icon=fusion-gui" in desktop and "Type=Application" in desktop
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(tmp_path / "usr/share/applications/fusion-gui.desktop")],
                       check=True)
    assert "exec /opt/fusion-gui/fusion-gui" in (tmp_path / "usr/bin/fusion-gui").read_text()
    # the extracted copy runs from any folder (a relocated /opt tree): --version with no Python on PATH
    out = subprocess.run([str(tmp_path / "opt/fusion-gui/fusion-gui"), "--version"], env=_bare_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == _version(), out.stderr


@pytest.mark.timeout(1800)
def test_tarball(built):
    with tarfile.open(built["tgz"]) as tar:
        names = set(tar.getnames())
    assert {"fusion-gui/fusion-gui", "fusion-gui/fusion-gui.desktop", "fusion-gui/fusion-gui.png"} <= names
