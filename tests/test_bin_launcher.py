"""bin/gliocascade, the launcher Nextflow puts on PATH for tasks run without containers: it prefers
another gliocascade on PATH, then python3 with gliocascade installed, then the repository's python/,
never runs itself, and says how to install when nothing works."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gliocascade

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin"
LAUNCHER = BIN / "gliocascade"
SYSTEM_PATH = "/usr/bin:/bin"
pytestmark = pytest.mark.skipif(shutil.which("bash", path=SYSTEM_PATH) is None, reason="needs bash")


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _run(path: str, *args: str, python: str | None = None, pythonpath: str | None = None,
         launcher: Path = LAUNCHER) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GLIOCASCADE_PYTHON")}
    env["PATH"] = path
    if python is not None:
        env["GLIOCASCADE_PYTHON"] = python
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([str(launcher), *args], env=env, capture_output=True, text=True, timeout=10)


def _failing_python(folder: Path, log: Path) -> Path:
    """A 'python' that cannot import anything, logging each call (to count attempts)."""
    return _script(folder / "python", f'echo call >> "{log}"\nexit 1\n')


@pytest.fixture(autouse=True)
def _no_system_gliocascade():
    if shutil.which("gliocascade", path=SYSTEM_PATH):
        pytest.skip("a system-wide gliocascade would be found on PATH")


def test_launcher_is_executable():
    assert os.access(LAUNCHER, os.X_OK)


def test_execs_another_gliocascade_on_path_with_arguments_unchanged(tmp_path):
    _script(tmp_path / "gliocascade", 'echo FAKE-GLIOCASCADE\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    args = ["run", "--input", "a file with spaces.csv", "*", ""]
    done = _run(f"{tmp_path}:{BIN}:{SYSTEM_PATH}", *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["FAKE-GLIOCASCADE"] + [f"[{a}]" for a in args]


def test_runs_the_cli_with_the_given_python(tmp_path):
    done = _run(f"{BIN}:{SYSTEM_PATH}", "--version", python=sys.executable)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gliocascade, version {gliocascade.__version__}"


def test_falls_back_to_the_repository_python_folder(tmp_path):
    # This python imports gliocascade only when the repository's python/ leads PYTHONPATH.
    python = _script(tmp_path / "python", f'case "$PYTHONPATH" in "{REPO / "python"}":/elsewhere) '
                                          f'exec "{sys.executable}" "$@";; esac\nexit 1\n')
    done = _run(f"{BIN}:{SYSTEM_PATH}", "--version", python=str(python), pythonpath="/elsewhere")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gliocascade, version {gliocascade.__version__}"


def test_not_installed_is_one_line_and_exit_127(tmp_path):
    done = _run(f"{BIN}:{SYSTEM_PATH}", "--version", python=str(_failing_python(tmp_path, tmp_path / "log")))
    assert done.returncode == 127
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "not installed" in lines[0] and f"pip install -e {REPO}" in lines[0]
    assert (tmp_path / "log").read_text().split() == ["call", "call"]  # installed, then repository python/


@pytest.mark.skipif(not Path("/usr/bin/python3").is_file(), reason="no system python3")
def test_system_python_either_runs_from_the_repository_or_says_not_installed():
    # The system python may lack click: then the launcher must say so; if it has it, --version works.
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gliocascade.cli"], capture_output=True,
                           env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(REPO / "python")}, timeout=10)
    done = _run(f"{BIN}:{SYSTEM_PATH}", "--version", python="/usr/bin/python3")
    if probe.returncode == 0:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"gliocascade, version {gliocascade.__version__}"
    else:
        assert done.returncode == 127
        assert len(done.stderr.splitlines()) == 1 and "not installed" in done.stderr


def test_never_runs_itself_through_path(tmp_path):
    # bin/ first, a symlink to the launcher and a copy of it: none of them counts as another gliocascade.
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "gliocascade").symlink_to(LAUNCHER)
    (tmp_path / "copy").mkdir()
    shutil.copy2(LAUNCHER, tmp_path / "copy" / "gliocascade")
    log = tmp_path / "log"
    python = str(_failing_python(tmp_path, log))
    path = f"{BIN}:{tmp_path / 'link'}:{tmp_path / 'copy'}:{SYSTEM_PATH}"
    for launcher in (LAUNCHER, tmp_path / "link" / "gliocascade"):
        log.unlink(missing_ok=True)
        done = _run(path, "--version", python=python, launcher=launcher)
        assert done.returncode == 127, done.stderr
        assert log.read_text().split() == ["call", "call"]
