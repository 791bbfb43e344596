"""A step publishes all of its outputs or none, and an I/O error names the file it was writing.

A full disk is the common case on clusters: the write of the second output of `predict` fails
after the first was complete. Simulated here by making the save of one file raise ENOSPC, so the
test runs on any machine (tests/test_faults.py fills a real tmpfs where mounting is permitted).
"""
from __future__ import annotations

import errno

import nibabel as nib
import pytest


def _enospc_on(monkeypatch, fragment: str):
    """nib.save raises 'No space left on device' (no file name, as gzip's write errors do) for paths with ``fragment``."""
    real = nib.save

    def save(img, filename, *args, **kwargs):
        if fragment in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(img, filename, *args, **kwargs)

    monkeypatch.setattr(nib, "save", save)


@pytest.fixture
def one_case(tmp_path):
    from gliocascade.phantom import write_phantoms

    return write_phantoms(tmp_path / "cases", n=1, seed=21, shape=(64, 64, 48))[0]


def test_predict_publishes_nothing_when_a_later_output_cannot_be_written(one_case, random_tiny_model, tmp_path,
                                                                          cli, monkeypatch):
    _enospc_on(monkeypatch, "_prob")
    out = tmp_path / "out"
    result = cli("predict", "--case", one_case, "--model", random_tiny_model, "--out", out, "--tta", "1",
                 "--device", "cpu", "--save-probabilities")
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "_prob.nii.gz" in lines[0] and "No space left on device" in lines[0]
    assert "?" not in lines[0].split(":")[1]
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert left == [], left


def test_an_unnamed_write_error_is_reported_with_the_output_path(tmp_path, monkeypatch):
    import numpy as np

    from gliocascade.io import brats_affine, write_labels

    _enospc_on(monkeypatch, "labels")
    target = tmp_path / "labels.nii.gz"
    with pytest.raises(OSError) as info:
        write_labels(target, np.zeros((4, 4, 4), np.uint8), brats_affine())
    assert info.value.filename == str(target)
    assert not any(tmp_path.iterdir())
