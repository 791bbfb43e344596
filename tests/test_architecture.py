"""The package's structure, checked: one owner per concept (README, architecture).

- the entry layer (`cli.py`, `commands/`) is the only code that imports click or prints;
- no import circle, counting imports inside functions too (a lazy import hides a circle from
  Python, not from a reader);
- the file-name patterns of a case are spelled in one module, the case layout, and it makes each;
- `gliocascade --help` and `--version` load no torch (every Nextflow task runs `--version`).
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "gliocascade"
ENTRY_LAYER = ("gliocascade.cli", "gliocascade.commands")
LAYOUT_MODULE = "gliocascade.layout"
LAYOUT_PATTERNS = ("_seg.nii", "_seg_native", "_pred.nii", "_prob.nii", "_brainmask", "_metrics.csv",
                   "brats_to_native.tfm", "native_reference", "_t1ce", "-t1c")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _in_entry_layer(name: str) -> bool:
    return any(name == e or name.startswith(e + ".") for e in ENTRY_LAYER)


def _imports(name: str, path: Path) -> set[str]:
    """Package modules ``name`` imports anywhere in its body (relative or absolute imports)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        targets.update(c for c in candidates if c in MODULES and c != name and c != "gliocascade")
    return targets


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_package():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"


def _click_and_prints(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
            found.append(f"line {node.lineno}: imports click")
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "click":
            found.append(f"line {node.lineno}: imports click")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(f"line {node.lineno}: print()")
    return found


def test_only_the_entry_layer_imports_click_or_prints():
    offenders = {name: hits for name, path in MODULES.items() if not _in_entry_layer(name)
                 for hits in [_click_and_prints(path)] if hits}
    assert not offenders, f"library modules that print or import click: {offenders}"
    assert _click_and_prints(MODULES["gliocascade.cli"]), "the check must see the entry layer's click"


def _code_strings(path: Path, entry_layer: bool) -> list[tuple[int, str]]:
    """String constants of a module that are code, not documentation: docstrings are left out, and
    in the entry layer the help texts and examples of the command line too."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
        if entry_layer and isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in ("help", "epilog"):
                    skip.update(id(n) for n in ast.walk(kw.value))
            if isinstance(node.func, ast.Name) and node.func.id == "_example":
                skip.update(id(n) for a in node.args for n in ast.walk(a))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]


def _without_flags(text: str) -> str:
    """The text with command-line flags taken out: ``--t1ce`` names an option, not a file."""
    return re.sub(r"--[a-z][a-z0-9-]*", "", text)


def test_flags_are_not_taken_for_file_names():
    assert "-t1c" not in _without_flags("give --t1 --t1ce --t2 --flair")
    assert "-t1c" in _without_flags("BraTS-GLI-00001-000-t1c.nii.gz")


def test_case_file_names_are_spelled_in_the_layout_module_only():
    assert LAYOUT_MODULE in MODULES, f"{LAYOUT_MODULE} owns the case layout"
    spelled = {p: [] for p in LAYOUT_PATTERNS}
    for name, path in MODULES.items():
        entry = _in_entry_layer(name)
        for line, text in _code_strings(path, entry):
            text = _without_flags(text) if entry else text
            for pattern in LAYOUT_PATTERNS:
                if pattern in text:
                    spelled[pattern].append(f"{name}:{line}")
    outside = {p: [w for w in where if not w.startswith(LAYOUT_MODULE + ":")] for p, where in spelled.items()}
    assert not any(outside.values()), f"file-name patterns outside {LAYOUT_MODULE}: " + str(
        {p: w for p, w in outside.items() if w})
    from gliocascade import layout

    made = [layout.seg_name("x"), layout.seg_native_name("x"), layout.pred_name("x"), layout.prob_name("x"),
            layout.brainmask_name("x"), layout.metrics_name("x"), layout.image_name("x", "t1ce"),
            layout.image_name("x", "t1ce", "2023"), layout.TRANSFORM_NAME, layout.NATIVE_REFERENCE_NAME]
    missing = [p for p in LAYOUT_PATTERNS if not any(p in name for name in made)]
    assert not missing, f"the layout module must make the names holding {missing}"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"], ["predict", "--help"]])
def test_help_and_version_load_no_torch(argv):
    probe = ("import sys\n"
             "from gliocascade.cli import main\n"
             "try:\n"
             f"    main({argv!r})\n"
             "except SystemExit as exc:\n"
             "    code = exc.code\n"
             "loaded = sorted(m for m in ('torch', 'SimpleITK', 'ants', 'nibabel') if m in sys.modules)\n"
             "sys.stderr.write('LOADED=' + ','.join(loaded) + ' CODE=' + str(code) + '\\n')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("LOADED=") and last.endswith("CODE=0"), done.stderr
    assert "torch" not in last.split()[0], f"{argv} imported {last}"
