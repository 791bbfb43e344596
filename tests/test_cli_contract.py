"""The command-line contract of DESIGN.md: every command exists, explains itself, and takes its options."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gliocascade import __version__

# Command -> the options DESIGN.md promises (others may be added, these must stay).
CONTRACT = {
    "phantom": ["--out", "--n", "--seed", "--shape", "--with-skull"],
    "convert": ["--dicom", "--out", "--case-id", "--t1", "--t1ce", "--t2", "--flair"],
    "preprocess": ["--t1", "--t1ce", "--t2", "--flair", "--case-id", "--out", "--atlas"],
    "train": ["--data", "--samplesheet", "--out", "--config", "--epochs", "--fold", "--folds", "--seed",
              "--resume", "--device"],
    "predict": ["--case", "--cases", "--model", "--out", "--tta", "--case-id", "--device"],
    "model-summary": ["--config"],
    "postprocess": ["--pred", "--out", "--et-threshold", "--model", "--native-transforms"],
    "tune-threshold": ["--pred", "--gt", "--model"],
    "evaluate": ["--pred", "--gt", "--case-id", "--out", "--pred-labels", "--gt-labels"],
    "report": ["--run-dir", "--metrics", "--out"],
    "run": ["--samplesheet", "--model", "--out", "--workers", "--no-dicom-seg", "--deidentify-seg"],
    "dicom-seg": ["--seg", "--source", "--out", "--model", "--label-convention", "--deidentify"],
    "demo": ["--out"],
    "fetch-atlas": ["--dest"],
}


def test_version(cli):
    res = cli("--version")
    assert res.exit_code == 0
    assert res.output.strip() == f"gliocascade, version {__version__}"


def test_version_matches_the_installed_distribution():
    from importlib.metadata import version

    assert version("gliocascade") == __version__


def test_console_script_runs():
    beside = Path(sys.executable).parent / "gliocascade"  # the environment under test, not another on PATH
    exe = str(beside) if beside.is_file() else shutil.which("gliocascade")
    assert exe, "console script gliocascade not installed"
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and __version__ in res.stdout


def test_group_help_lists_every_command(cli):
    res = cli("--help")
    assert res.exit_code == 0
    for command in CONTRACT:
        assert f"  {command} " in res.output or f"  {command}\n" in res.output, command


@pytest.mark.parametrize("command", sorted(CONTRACT))
def test_command_help_shows_its_contract_options(cli, command):
    res = cli(command, "--help")
    assert res.exit_code == 0, res.output
    assert f"{command} [OPTIONS]" in res.output
    options = {tok.strip(",") for tok in res.output.split() if tok.startswith("--")}
    missing = [o for o in CONTRACT[command] if o not in options]
    assert not missing, f"{command} lacks {missing}"
    # --help explains itself: a sentence of description, not just the usage line.
    description = res.output.split("\n\n")[1].strip()
    assert len(description) > 20


@pytest.mark.parametrize("command", ["predict", "train", "postprocess", "evaluate"])
def test_label_and_device_choices_are_validated(cli, command):
    res = cli(command, "--help")
    text = " ".join(res.output.split())
    if command in ("predict", "train"):
        assert "auto|cpu|cuda" in text
    if command == "evaluate":
        assert "--pred-labels [2015|2019|2023|2024]" in text and "--gt-labels [2015|2019|2023|2024]" in text
    if command == "postprocess":
        assert "--label-convention [2019|2023|2024]" in text


def test_usage_errors_exit_2(cli):
    assert cli("evaluate", "--pred", "x.nii.gz").exit_code == 2  # missing required options
    assert cli("evaluate", "--bogus").exit_code == 2
    assert cli("no-such-command").exit_code == 2
    assert cli("predict", "--model", "m", "--out", "o", "--tta", "3").exit_code == 2
