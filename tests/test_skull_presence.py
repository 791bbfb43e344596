"""The skull-stripped detector: right on every real image here, and on heads built to fool one
of its two measures alone."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from gliocascade.skull_presence import decide, measure

SPACING = (1.0, 1.0, 2.0)


def _image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(SPACING)
    return img


def _head(air_noise: float = 20.0, stripped: bool = False, slab: slice | None = None,
          background: float = 0.0) -> sitk.Image:
    """An ellipsoid brain (~1.3 L) inside a bright scalp shell, air with Rician-like noise."""
    z, y, x = np.mgrid[0:90, 0:220, 0:200]
    r = ((x - 100) / 70.0) ** 2 + ((y - 110) / 85.0) ** 2 + ((z - 45) / 30.0) ** 2
    head = ((x - 100) / 88.0) ** 2 + ((y - 110) / 103.0) ** 2 + ((z - 45) / 40.0) ** 2
    rng = np.random.default_rng(0)
    arr = np.abs(rng.normal(0, air_noise, r.shape))
    arr[head <= 1] = 600.0       # scalp and fat
    bone = (head <= 0.8) & (r > 1)
    arr[bone] = 80.0 + rng.normal(0, 5, r.shape)[bone]
    arr[r <= 1] = 300.0 + 40 * np.sin(x[r <= 1] / 6.0)
    if stripped:
        arr = np.where(r <= 1, arr, background)
    if slab is not None:
        arr = arr[slab]
    return _image(arr)


def test_head_with_noisy_air_is_with_skull_and_its_brain_alone_is_stripped():
    with_skull, brain = measure(_head()), measure(_head(stripped=True))
    assert not with_skull.stripped and with_skull.volume_ml > 2500
    assert brain.stripped and 1000 < brain.volume_ml < 2000 and brain.zero_fraction_of_dark > 0.99


def test_neither_measure_alone_decides():
    """A zero-padded head has an exactly zero outside but a head's volume; a thin slab of a head
    with skull has a brain's volume but noisy air: both stay 'with skull'."""
    padded = measure(_head(air_noise=0.0))
    assert padded.zero_fraction_of_dark > 0.9 and not padded.stripped
    slab = measure(_head(slab=slice(30, 55)))
    assert slab.volume_ml < 2200 and not slab.stripped


def test_a_z_scored_stripped_brain_with_a_negative_constant_outside_is_stripped():
    arr = sitk.GetArrayFromImage(_head(stripped=True))
    inside = arr > 0
    z = np.where(inside, (arr - arr[inside].mean()) / arr[inside].std(), -1.7)
    assert measure(_image(z)).stripped


def test_decision_is_t1ce_s_with_a_warning_when_modalities_disagree(caplog):
    images = {"t1": _head(), "t1ce": _head(stripped=True), "t2": _head(stripped=True), "flair": _head(stripped=True)}
    with caplog.at_level(logging.WARNING):
        d = decide(images, case_id="P1")
    assert d.stripped and d.source == "detected" and "exactly 0" in d.reason
    assert "disagree" in caplog.text and "t1 with skull" in caplog.text
    record = d.record()
    assert record["value"] is True and record["measures"]["t1"]["stripped"] is False


def test_the_override_wins_and_is_recorded_with_what_the_rule_would_say():
    images = {m: _head() for m in ("t1", "t1ce", "t2", "flair")}
    d = decide(images, "yes")
    assert d.stripped and d.source == "--input-skull-stripped yes" and "would say with skull" in d.reason
    assert not decide(images, "no").stripped
    with pytest.raises(ValueError):
        decide(images, "maybe")


def _real_images(data_dir: Path) -> dict[str, tuple[Path, bool]]:
    native = data_dir / "native" / "TCGA-FG-6692"
    found = {p.name: (p, False) for p in sorted(native.glob("TCGA-FG-6692_*.nii.gz"))}
    found.update({p.name: (p, True) for p in sorted((native / "reference" / "hdbet_native_brain").glob("*.nii.gz"))})
    decubitus = next((data_dir / "dicom" / "dcm_qa_decubitus_HFS").glob("Ref_regenerated*/t1_fl2d_sag_*.nii.gz"), None)
    if decubitus is not None:
        found[decubitus.name] = (decubitus, False)
    for case in sorted((data_dir / "brats_space").iterdir()) if (data_dir / "brats_space").is_dir() else []:
        for p in sorted(case.glob(f"{case.name}[-_]t*.nii.gz")):
            found[f"{case.name}/{p.name}"] = (p, True)
    return found


def test_right_on_every_real_image(data_dir):
    """Raw TCGA-FG-6692 and the decubitus volunteer T1 have skull; the HD-BET brains and both
    BraTS-space cases are stripped (README records the measures)."""
    images = _real_images(data_dir)
    if len(images) < 14:
        pytest.skip(f"real images missing under {data_dir} (found {len(images)} of 17)")
    measures = {name: measure(sitk.ReadImage(str(p), sitk.sitkFloat32)) for name, (p, _) in images.items()}
    wrong = {name: m.as_dict() for name, m in measures.items() if m.stripped != images[name][1]}
    assert not wrong, wrong
    assert sum(s for _, s in images.values()) >= 8 and sum(not s for _, s in images.values()) >= 5
