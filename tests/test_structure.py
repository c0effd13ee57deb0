"""The code's shape: the engine imports no Qt, no import cycles, no file over 400 lines, the UI never
imports the command line. Static checks read the source with ast; the Qt check imports for real."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fusion_gui"
MAX_LINES = 400
QT = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "superqt", "qtpy")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """fusion_gui modules NAME imports anywhere in its file: top level, in functions, under TYPE_CHECKING.
    `from a.b import c` counts as importing a.b.c when that is a module, else a.b."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source)
    return {m for m in found if m in MODULES and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_only_that():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_function_level_imports_are_seen():
    # the CLI's entry point imports its subcommands by name, but each subcommand imports drive at the top
    assert "fusion_gui.cli.drive" in imported_modules("fusion_gui.cli.merge")
    assert "fusion_gui.engine.merge" in imported_modules("fusion_gui.cli.merge")  # inside run()


def test_engine_modules_import_no_qt():
    code = (
        "import pkgutil, sys\n"
        "import fusion_gui.engine as engine\n"
        "names = [m.name for m in pkgutil.walk_packages(engine.__path__, 'fusion_gui.engine.')]\n"
        "for name in names:\n"
        "    __import__(name)\n"
        f"qt = sorted(m for m in sys.modules if m.split('.')[0] in {QT!r})\n"
        "print(len(names), 'modules;', 'Qt:', qt)\n"
        "sys.exit(1 if qt else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    count = int(run.stdout.split()[0])
    assert count >= len([m for m in MODULES if m.startswith("fusion_gui.engine.")]) - 1, run.stdout


def test_no_import_cycles():
    graph = {name: imported_modules(name) for name in MODULES}
    assert cycles(graph) == []


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_ui_never_imports_the_command_line():
    offenders = {name: sorted(m for m in imported_modules(name) if m.startswith("fusion_gui.cli"))
                 for name in MODULES if name.startswith("fusion_gui.ui")}
    assert {k: v for k, v in offenders.items() if v} == {}
