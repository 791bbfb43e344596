"""Fault injection: `run` and `predict --cases` killed, stopped, doubled, or short of disk.

Every test drives the real console script as a subprocess on a cohort of three small phantoms
(`space=brats` rows, random tiny weights, one worker, TTA 1, CPU) and compares with one
uninterrupted run. Kill points are drawn from ``GLIOCASCADE_FAULT_SEED`` (a fixed default), so a
failure repeats with the same seed and other seeds explore other points.
"""
from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

EXE = Path(sys.executable).parent / "gliocascade"
SEED = int(os.environ.get("GLIOCASCADE_FAULT_SEED", "20261202"))
FAST = ("--tta", "1", "--device", "cpu")
SHAPE = (64, 64, 48)
STEPS = ("predict", "postprocess", "evaluate")

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to follow processes")


# --------------------------------------------------------------------------- processes

def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a live process (None when gone or a zombie): tells pid reuse apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


class Proc:
    """One CLI call as a subprocess in its own session, remembering every descendant it had."""

    def __init__(self, args: list, log: Path):
        self.log = log
        with open(log, "w") as fh:
            self.p = subprocess.Popen([str(EXE), *map(str, args)], stdout=fh, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.tree: dict[int, str] = {}

    @property
    def pid(self) -> int:
        return self.p.pid

    def scan(self) -> None:
        stack = [self.p.pid]
        while stack:
            for kid in _children(stack.pop()):
                started = _start_time(kid)
                if started is not None:
                    self.tree.setdefault(kid, started)
                stack.append(kid)

    def wait_for(self, paths: "callable", timeout: float = 180.0, step: float = 0.01) -> bool:
        """Poll until ``paths()`` is true (True) or the process ends or time runs out (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.scan()
            if paths():
                return True
            if self.p.poll() is not None:
                return bool(paths())
            time.sleep(step)
        return False

    def survivors(self, grace: float = 10.0) -> list[int]:
        """Descendants still alive ``grace`` seconds after the end of the process."""
        deadline = time.monotonic() + grace
        while True:
            alive = [pid for pid, st in self.tree.items() if _start_time(pid) == st]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text()

    def errors(self) -> list[str]:
        return [ln for ln in self.output().splitlines() if ln.startswith("error:")]

    def reap(self) -> None:
        """Kill whatever is left of this call (the test must not leak processes)."""
        self.scan()
        for pid, st in self.tree.items():
            if _start_time(pid) == st:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@contextlib.contextmanager
def started(args: list, log: Path) -> Iterator[Proc]:
    proc = Proc(args, log)
    try:
        yield proc
    finally:
        proc.reap()


def finished(args: list, log: Path, timeout: float = 300) -> Proc:
    with started(args, log) as proc:
        proc.p.wait(timeout)
    return proc


# --------------------------------------------------------------------------- files

def _outputs(folder: Path) -> dict[str, bytes]:
    """The final outputs compared byte for byte: every NIfTI and CSV."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and (p.name.endswith(".nii.gz") or p.name.endswith(".csv"))}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def appearing(paths: list[Path]):
    """A test that becomes true when one of ``paths`` is created anew (a killed run's stale one does not count)."""
    stale = {p: _stamp(p) for p in paths}
    return lambda: any(_stamp(p) not in (None, stale[p]) for p in paths)


def _leftovers(folder: Path) -> list[str]:
    """Staging folders and temporary files: none may survive a finished rerun."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".partial-") or ".part." in p.name or p.name.endswith(".part"))


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A tmpfs at ``where`` (skips the test when mounting is not permitted); unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs ({options}): {proc.stderr.strip() or proc.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# --------------------------------------------------------------------------- the cohort

@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """Three 64x64x48 phantoms (seeds 500-502) in a samplesheet, plus a fourth one in a sheet of its own."""
    from gliocascade.phantom import write_phantoms

    root = tmp_path_factory.mktemp("faults")
    cases = write_phantoms(root / "cases", n=3, seed=500, shape=SHAPE)
    extra = write_phantoms(root / "extra", n=1, seed=503, shape=SHAPE)

    def sheet(path: Path, folders: list[Path]) -> Path:
        lines = ["case_id,t1,t1ce,t2,flair,seg,space"]
        for case in folders:
            cid = case.name
            lines.append(",".join([cid, *[str(case / f"{cid}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair",
                                                                                     "seg")], "brats"]))
        path.write_text("\n".join(lines) + "\n")
        return path

    return {"root": root, "cases": root / "cases", "ids": [c.name for c in cases],
            "sheet": sheet(root / "samples.csv", cases), "extra_sheet": sheet(root / "extra.csv", extra),
            "extra_id": extra[0].name}


def _run_args(cohort: dict, model: Path, out: Path, sheet: Path | None = None) -> list:
    return ["run", "--samplesheet", sheet or cohort["sheet"], "--model", model, "--out", out, "--workers", "1", *FAST]


@pytest.fixture(scope="module")
def reference(cohort, random_tiny_model) -> Path:
    """One uninterrupted run: what every interrupted-and-resumed run must reproduce byte for byte."""
    out = cohort["root"] / "reference"
    proc = finished(_run_args(cohort, random_tiny_model, out), cohort["root"] / "reference.log")
    assert proc.p.returncode == 0, proc.output()
    return out


def _events(cohort: dict, out: Path) -> list[tuple[str, Path]]:
    """Progress markers of one run in order (one worker): each step's staging folder, then the report."""
    events = [(f"{cid}:{step}", out / cid / f".partial-{step}") for cid in cohort["ids"] for step in STEPS]
    return events + [("report", out / "report")]


def kill_plan(seed: int, n_cases: int) -> list[tuple[int, float]]:
    """Five seeded kill points: one in each step kind (random case), the report, one more anywhere."""
    rng = random.Random(seed)
    chosen = {rng.randrange(n_cases) * len(STEPS) + k for k in range(len(STEPS))}
    report = n_cases * len(STEPS)
    chosen.add(report)
    while len(chosen) < 5:
        chosen.add(rng.randrange(report))
    delays = {0: 0.5, 1: 0.03, 2: 0.03}  # predict takes about a second here, the others far less
    return [(i, rng.uniform(0.0, 1.0 if i == report else delays[i % len(STEPS)])) for i in sorted(chosen)]


# --------------------------------------------------------------------------- finding 1: SIGKILL, then resume

@pytest.mark.slow
def test_sigkill_at_seeded_points_then_rerun_gives_identical_outputs(cohort, reference, random_tiny_model, tmp_path):
    out = tmp_path / "out"
    args = _run_args(cohort, random_tiny_model, out)
    events = _events(cohort, out)
    plan = kill_plan(SEED, len(cohort["ids"]))
    for n, (index, delay) in enumerate(plan):
        with started(args, tmp_path / f"killed{n}.log") as proc:
            reached = appearing([path for _, path in events[index:]])  # this point, or one after it
            assert proc.wait_for(reached), (events[index][0], proc.output())
            time.sleep(delay)
            proc.scan()
            proc.p.send_signal(signal.SIGKILL)
            assert proc.p.wait(30) == -signal.SIGKILL, f"run ended before the kill at {events[index][0]}"
            assert len(proc.tree) >= 1  # the fork server and the worker were seen
            alive = proc.survivors()
            assert alive == [], f"processes of the killed run outlived it: {alive} (kill at {events[index][0]})"
            assert (out / ".gliocascade.lock").exists()  # stale now: the next run must take it over
    final = finished(args, tmp_path / "final.log")
    assert final.p.returncode == 0, final.output()
    assert _leftovers(out) == []
    assert not (out / ".gliocascade.lock").exists()  # a run that ends removes its lock
    want, got = _outputs(reference), _outputs(out)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == [], f"kill plan {plan} (seed {SEED})"


# --------------------------------------------------------------------------- findings 1 and 3: SIGTERM, Ctrl-C

@pytest.mark.slow
@pytest.mark.parametrize("signame,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signal_stops_the_cohort_cleanly_and_says_how_to_resume(cohort, reference, random_tiny_model, tmp_path,
                                                               signame, code):
    """SIGTERM to the run (SLURM at the wall-time limit) or Ctrl-C to its group stops it within seconds."""
    out = tmp_path / "out"
    first, second, last = cohort["ids"]
    with started(_run_args(cohort, random_tiny_model, out), tmp_path / "run.log") as proc:
        assert proc.wait_for(lambda: (out / second / ".partial-predict").exists()), proc.output()
        time.sleep(0.2)
        proc.scan()
        t0 = time.monotonic()
        if signame == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            proc.p.send_signal(signal.SIGTERM)
        try:
            rc = proc.p.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{signame} did not stop the run within 30 s")
        stopped_in = time.monotonic() - t0
        alive = proc.survivors()
    assert rc == code, proc.output()
    assert stopped_in < 10.0, stopped_in
    assert alive == [], f"processes outlived the stopped run: {alive}"
    errors = proc.errors()
    assert len(errors) == 1 and "rerun" in errors[0], proc.output()
    assert not (out / last).exists(), "cases after the stop were still processed"
    assert not (out / "report").exists()
    assert _leftovers(out) == []
    want = _outputs(reference)
    done = _outputs(out)
    assert f"{first}/{first}_metrics.csv" in done  # the finished case is kept
    assert [k for k in done if done[k] != want[k]] == []


# --------------------------------------------------------------------------- finding 2: one run per --out

@pytest.mark.slow
def test_second_run_on_the_same_out_is_refused_and_a_stale_lock_is_taken_over(cohort, reference, random_tiny_model,
                                                                            tmp_path):
    out = tmp_path / "out"
    first = cohort["ids"][0]
    with started(_run_args(cohort, random_tiny_model, out), tmp_path / "a.log") as holder:
        assert holder.wait_for(lambda: (out / first / ".partial-predict").exists()), holder.output()
        t0 = time.monotonic()
        second = finished(_run_args(cohort, random_tiny_model, out, cohort["extra_sheet"]), tmp_path / "b.log")
        refused_in = time.monotonic() - t0
        holder_ran_throughout = holder.p.poll() is None
        holder.p.send_signal(signal.SIGKILL)
        holder.p.wait(30)
    assert second.p.returncode == 2, second.output()
    errors = second.errors()
    assert len(errors) == 1, second.output()
    assert ".gliocascade.lock" in errors[0] and f"pid {holder.pid}" in errors[0], errors
    assert "FAILED" not in second.output()
    assert not (out / cohort["extra_id"]).exists()  # the refused run wrote nothing
    assert holder_ran_throughout, "the first run ended before the second was refused"
    assert refused_in < 60, refused_in

    lock = out / ".gliocascade.lock"
    assert f"pid {holder.pid} " in lock.read_text()  # left by the killed run: stale, must not block
    with started(_run_args(cohort, random_tiny_model, out), tmp_path / "c.log") as rerun:
        # it takes the lock over and goes on to work (the resume itself: the SIGKILL test above)
        assert rerun.wait_for(lambda: "unfinished leftover" in rerun.output()), rerun.output()
        assert f"pid {rerun.pid} " in lock.read_text()
        assert "taking over" in rerun.output() and f"pid {holder.pid} " in rerun.output()


# --------------------------------------------------------------------------- finding 6: unwritable output

def test_check_writable_folder(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.io import check_writable_folder

    check_writable_folder(tmp_path)  # writable: passes and leaves nothing behind
    check_writable_folder(tmp_path / "new" / "deeper")  # would be created under a writable folder
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_writable_folder(tmp_path / "file")
    with pytest.raises(InputError, match="not a folder"):
        check_writable_folder(tmp_path / "file" / "below")
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        with pytest.raises(InputError) as info:
            check_writable_folder(ro)
        assert info.value.path == str(ro) and "not writable" in str(info.value)
        with pytest.raises(InputError) as info:
            check_writable_folder(ro / "sub")
        assert info.value.path == str(ro) and "not writable" in str(info.value)


@pytest.mark.slow
def test_read_only_out_is_refused_before_any_work(cohort, random_tiny_model, tmp_path):
    from gliocascade.phantom import write_phantoms

    broken = write_phantoms(tmp_path / "broken", n=1, seed=504, shape=SHAPE)[0]
    t2 = broken / f"{broken.name}_t2.nii.gz"
    t2.write_bytes(t2.read_bytes()[:100])  # reading the case would fail: the output is checked first
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        calls = {
            "run": _run_args(cohort, random_tiny_model, ro),
            "predict": ["predict", "--case", broken, "--model", random_tiny_model, "--out", ro, *FAST],
            "preprocess": ["preprocess", "--case-id", "x", "--out", ro,
                           *[a for m in ("t1", "t1ce", "t2", "flair") for a in (f"--{m}", tmp_path / f"no_{m}.nii.gz")]],
        }
        for name, args in calls.items():
            proc = finished(args, tmp_path / f"{name}.log")
            assert proc.p.returncode == 2, (name, proc.output())
            errors = proc.errors()
            assert len(errors) == 1, (name, proc.output())
            assert errors[0].startswith(f"error: {ro}: ") and "not writable" in errors[0], (name, errors)
            assert "FAILED" not in proc.output(), name


# --------------------------------------------------------------------------- disk full

@pytest.mark.slow
def test_disk_full_fails_one_case_and_publishes_nothing_half_written(cohort, reference, random_tiny_model, tmp_path):
    """The disk fills while the second case predicts and is freed after it failed: only that case fails."""
    first, second, last = cohort["ids"]
    with tmpfs(tmp_path / "disk", "size=4m") as disk:
        out = disk / "out"
        filler = disk / "filler"
        with started(_run_args(cohort, random_tiny_model, out), tmp_path / "run.log") as proc:
            staging = out / second / ".partial-predict"
            assert proc.wait_for(staging.exists), proc.output()
            with open(filler, "wb", buffering=0) as fh:  # fill the disk up to the last byte
                chunk = b"\0" * 65536
                with contextlib.suppress(OSError):
                    while True:
                        fh.write(chunk)
                        fh.flush()
                for size in (4096, 512, 1):
                    with contextlib.suppress(OSError):
                        while True:
                            fh.write(b"\0" * size)
                            fh.flush()
            assert proc.wait_for(lambda: not staging.exists(), timeout=120), proc.output()
            filler.unlink()
            rc = proc.p.wait(180)
        log = proc.output()
        assert rc == 1, log
        failed = [ln for ln in log.splitlines() if f"{second}: FAILED at predict:" in ln]
        assert len(failed) == 1, log
        assert os.strerror(errno.ENOSPC) in failed[0]
        assert f"{second}_" in failed[0].split("FAILED at predict:", 1)[1], failed[0]  # names the file
        assert not (out / second / f"{second}_pred.nii.gz").exists()
        assert _leftovers(out) == []
        want, got = _outputs(reference), _outputs(out)
        for cid in (first, last):
            for name in (f"{cid}_pred.nii.gz", f"{cid}_seg.nii.gz", f"{cid}_metrics.csv"):
                key = f"{cid}/{name}"
                assert got.get(key) == want[key], key
        assert (out / "report" / "report.html").is_file()
        assert second in (out / "report" / "failures.csv").read_text()


# --------------------------------------------------------------------------- predict --cases

@pytest.mark.slow
def test_predict_cases_killed_then_rerun_skips_finished_cases_and_matches(cohort, random_tiny_model, tmp_path):
    """`predict --cases` resumes like `run`: an existing ``<id>_pred.nii.gz`` is complete (atomic) and kept."""
    ids = cohort["ids"]
    ref = tmp_path / "ref"
    args = ["predict", "--cases", cohort["cases"], "--model", random_tiny_model, *FAST]
    done = finished([*args, "--out", ref], tmp_path / "ref.log")
    assert done.p.returncode == 0, done.output()

    out = tmp_path / "out"
    rng = random.Random(SEED + 1)

    def writing(cid: str):  # the case's temporary files appear: kill while it writes
        return lambda: (out / cid).is_dir() and any(".part" in p.name for p in (out / cid).iterdir())

    def predicting(i: int):  # the previous case was published: kill during this one's inference
        return lambda: (out / ids[i - 1] / f"{ids[i - 1]}_pred.nii.gz").exists()

    # two seeded kill points, in the order a run meets them: one while a case predicts, one while one writes
    points = sorted([(rng.randrange(1, len(ids)), 0), (rng.randrange(len(ids)), 1)])
    plan = [(predicting(i), rng.uniform(0.05, 0.6)) if kind == 0 else (writing(ids[i]), rng.uniform(0, 0.01))
            for i, kind in points]
    for n, (ready, delay) in enumerate(plan):
        with started([*args, "--out", out], tmp_path / f"killed{n}.log") as proc:
            assert proc.wait_for(ready), proc.output()
            time.sleep(delay)
            proc.p.send_signal(signal.SIGKILL)
            assert proc.p.wait(30) == -signal.SIGKILL, f"predict ended before kill point {n} of {points}"
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*_pred.nii.gz")}
    assert kept  # a kill during a case's inference comes after the case before it was published
    final = finished([*args, "--out", out], tmp_path / "final.log")
    assert final.p.returncode == 0, final.output()
    assert _leftovers(out) == []
    assert _outputs(out) == _outputs(ref)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished cases were skipped, not redone
    for p in kept:
        assert f"{p.name}" in final.output() and "skipped" in final.output()


# --------------------------------------------------------------------------- the pieces, in-process

def test_out_lock_refuses_a_second_holder_and_takes_over_a_stale_file(tmp_path):
    from gliocascade.errors import InputError
    from gliocascade.run_lock import LOCK_NAME, OutLock

    (tmp_path / LOCK_NAME).write_text("pid 999999 on host gone, started long ago\n")  # a killed run's file
    with OutLock(tmp_path):
        held = (tmp_path / LOCK_NAME).read_text()
        assert held.startswith(f"pid {os.getpid()} on host ")
        with pytest.raises(InputError) as info:
            OutLock(tmp_path).acquire()  # a second open file: flock conflicts even within one process
        message = str(info.value)
        assert "\n" not in message and LOCK_NAME in message and f"pid {os.getpid()} " in message
        assert (tmp_path / LOCK_NAME).read_text() == held  # the refused one wrote nothing
    assert not (tmp_path / LOCK_NAME).exists()  # released: the file goes with the lock
    with OutLock(tmp_path):
        pass


def test_stop_on_signals_raises_once_and_restores_the_handlers():
    from gliocascade.lifeline import Interrupted, stop_on_signals

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert info.value.exit_code == 143 and "rerun the same command" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is before
    with stop_on_signals():  # a second signal while stopping is ignored, not raised again
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)


def test_leftovers_are_staging_and_temporaries_only(tmp_path):
    from gliocascade.leftovers import discard_run_leftovers

    case = tmp_path / "c1"
    (case / ".partial-predict").mkdir(parents=True)
    (case / ".partial-predict" / "c1_pred.nii.gz").write_bytes(b"half")
    (case / ".c1_seg.ab12cd34.part.nii.gz").write_bytes(b"half")
    (case / "c1_pred.nii.gz").write_bytes(b"done")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / ".report.x1y2z3w4.part.html").write_text("half")
    (tmp_path / "report" / "summary.csv").write_text("done")
    (tmp_path / "c2" / ".partial-evaluate").mkdir(parents=True)  # a case with nothing finished
    removed = discard_run_leftovers(tmp_path, ["c1", "c2"])
    assert len(removed) == 4
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["c1", "c1/c1_pred.nii.gz", "report", "report/summary.csv"]
