"""Progress a person can follow: train's epoch lines say loss and validation Dice, never 'nan'."""
from __future__ import annotations

import logging


def test_train_epoch_lines_without_validation_say_so_and_print_no_nan(tmp_path, caplog):
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.phantom import write_phantoms
    from gliocascade.train import train

    write_phantoms(tmp_path / "data", n=2, seed=40, shape=(32, 32, 32))
    cases = cases_from_folder(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="gliocascade.train"):
        train(cases, tmp_path / "m0", load_config("tiny"), epochs=1, steps_per_epoch=1, device="cpu", progress=False)
        train(cases, tmp_path / "m1", load_config("tiny"), epochs=1, steps_per_epoch=1, device="cpu", progress=False,
              fold=0, folds=2)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch")]
    assert len(lines) == 2, lines
    assert "nan" not in lines[0].lower() and "no validation cases" in lines[0]
    assert "val Dice WT" in lines[1] and "nan" not in lines[1].lower()


def test_provenance_and_log_lines_of_a_run_name_the_final_outputs_not_the_staging_folders(
        tmp_path, random_tiny_model, cli, caplog):
    import json

    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "ph", n=1, seed=41, shape=(64, 64, 48))[0]
    files = ",".join(str(case / f"{case.name}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair"))
    sheet = tmp_path / "s.csv"
    sheet.write_text(f"case_id,t1,t1ce,t2,flair,space,seg\nP,{files},brats,{case / (case.name + '_seg.nii.gz')}\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):  # the workers' records are relayed to the run's loggers
        assert cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--tta", "1",
                   "--device", "cpu").exit_code == 0
    lines = [r.getMessage() for r in caplog.records]
    assert not [ln for ln in lines if ".partial" in ln]
    final = out.resolve() / "P"
    assert f"P: wrote {final / 'P_pred.nii.gz'} (" in "\n".join(lines)  # predict wrote into .partial-predict
    assert f"wrote {final / 'P_metrics.csv'}" in lines  # evaluate into .partial-evaluate
    records = sorted((out / "P").glob("provenance_*.json"))
    assert [p.name for p in records] == ["provenance_evaluate.json", "provenance_postprocess.json",
                                         "provenance_predict.json"]
    for p in records:
        text = p.read_text()
        assert ".partial-" not in text, p.name
    pred = json.loads((out / "P" / "provenance_predict.json").read_text())
    assert pred["outputs"]["labels"] == str(out.resolve() / "P" / "P_pred.nii.gz")


# --------------------------------------------------------------------------- run: bar on a terminal, lines in a file

TIMESTAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def _run_argv(tmp_path, model, out):
    import sys

    from gliocascade.phantom import write_phantoms

    sheet = tmp_path / "two.csv"
    if not sheet.exists():
        lines = ["case_id,t1,t1ce,t2,flair,space"]
        for case in write_phantoms(tmp_path / "cases", n=2, seed=42, shape=(48, 48, 32)):
            lines.append(",".join([case.name, *(str(case / f"{case.name}_{m}.nii.gz")
                                                for m in ("t1", "t1ce", "t2", "flair")), "brats"]))
        sheet.write_text("\n".join(lines) + "\n")
    return [sys.executable, "-m", "gliocascade.cli", "run", "--samplesheet", str(sheet), "--model", str(model),
            "--out", str(out), "--tta", "1", "--device", "cpu", "--workers", "2"]


def _under_a_pty(argv, timeout: float = 300) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (100 columns) as its stdin, stdout and stderr; all it wrote."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_run_shows_a_cohort_bar_on_a_terminal_and_timestamped_lines_in_a_file(tmp_path, random_tiny_model):
    import re
    import subprocess

    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        code = subprocess.run(_run_argv(tmp_path, random_tiny_model, tmp_path / "to_file"), stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=300).returncode
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "\r" not in text and "|" not in text  # no bar, no carriage-return refreshes
    lines = text.splitlines()
    assert lines and all(re.match(TIMESTAMP, ln) for ln in lines), [ln for ln in lines if not re.match(TIMESTAMP, ln)]
    assert any(ln.endswith("phantom042: predict") for ln in lines)  # per-case lines name the step
    assert any("cases: 2 of 2 finished (0 failed)" in ln for ln in lines)
    assert any("ET threshold not tuned" in ln and "WARNING" in ln for ln in lines)  # a worker's warning, relayed

    code, screen = _under_a_pty(_run_argv(tmp_path, random_tiny_model, tmp_path / "on_tty"))
    assert code == 0, screen[-3000:]
    assert "\r" in screen and re.search(r"cases: +100%\|[^|]*\| 2/2 \[", screen), screen[-3000:]
    assert "failed=0" in screen
    assert "TTA passes" not in screen  # the workers' predict steps draw no bar of their own
    assert re.search(TIMESTAMP + r"INFO gliocascade\.pipeline: phantom04[23]: done", screen)  # lines above the bar


def test_predict_as_the_entry_command_shows_its_pass_bar_on_a_terminal_only(tmp_path, random_tiny_model):
    import re
    import subprocess
    import sys

    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "cases", n=1, seed=43, shape=(48, 48, 32))[0]

    def argv(out):
        return [sys.executable, "-m", "gliocascade.cli", "predict", "--case", str(case), "--model",
                str(random_tiny_model), "--out", str(out), "--tta", "2", "--device", "cpu"]

    code, screen = _under_a_pty(argv(tmp_path / "on_tty"))
    assert code == 0, screen[-3000:]
    assert "\r" in screen and re.search(r"phantom043 TTA passes: +\d+%\|", screen), screen[-3000:]

    log = tmp_path / "predict.log"
    with open(log, "w") as fh:
        code = subprocess.run(argv(tmp_path / "to_file"), stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=300).returncode
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "\r" not in text and "%|" not in text and "TTA passes" not in text
    assert "phantom043: wrote" in text
