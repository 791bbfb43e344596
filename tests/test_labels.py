"""Label conventions (2019: ET = 4, 2023: ET = 3) and label <-> region conversions."""
from __future__ import annotations

import numpy as np
import pytest

from gliocascade.errors import InputError
from gliocascade.labels import (allowed_labels, convert_labels, labels_to_regions, regions_to_labels,
                                validate_labels)


def _labels(et: int) -> np.ndarray:
    return np.array([0, 1, 2, et, 0, et, 1, 2], dtype=np.uint8).reshape(2, 2, 2)


@pytest.mark.parametrize("convention,et", [("2019", 4), ("2023", 3), (2019, 4)])
def test_regions_of_each_convention(convention, et):
    wt, tc, ets = labels_to_regions(_labels(et), convention)
    flat = _labels(et).ravel()
    assert wt.ravel().tolist() == [v in (1, 2, et) for v in flat]
    assert tc.ravel().tolist() == [v in (1, et) for v in flat]
    assert ets.ravel().tolist() == [v == et for v in flat]


@pytest.mark.parametrize("convention,et", [("2019", 4), ("2023", 3)])
def test_regions_to_labels_inverts_labels_to_regions(convention, et):
    labels = _labels(et)
    assert np.array_equal(regions_to_labels(labels_to_regions(labels, convention), convention), labels)


def test_regions_to_labels_precedence_and_probabilities():
    """ET wins over TC over WT; probabilities are thresholded at 0.5."""
    probs = np.array([[0.9, 0.9, 0.9, 0.2], [0.1, 0.7, 0.8, 0.2], [0.0, 0.3, 0.51, 0.9]]).reshape(3, 4, 1, 1)
    assert regions_to_labels(probs).ravel().tolist() == [2, 1, 4, 4]
    assert regions_to_labels(probs, "2023").ravel().tolist() == [2, 1, 3, 3]


def test_convert_labels_both_ways():
    a = _labels(4)
    b = convert_labels(a, "2019", "2023")
    assert np.array_equal(b, _labels(3))
    assert np.array_equal(convert_labels(b, "2023", "2019"), a)


def test_validate_accepts_integral_floats_and_returns_uint8():
    out = validate_labels(_labels(4).astype(np.float32), "2019")
    assert out.dtype == np.uint8 and np.array_equal(out, _labels(4))


@pytest.mark.parametrize("convention,bad_value", [("2019", 3), ("2023", 4), ("2019", 7)])
def test_validate_rejects_values_outside_the_convention(convention, bad_value):
    arr = _labels(4 if convention == "2019" else 3)
    arr[0, 0, 0] = bad_value
    with pytest.raises(InputError, match=rf"seg.nii.gz: label values \[{bad_value}\] are outside the BraTS {convention}"):
        validate_labels(arr, convention, "seg.nii.gz")


def test_validate_rejects_nan_non_integers_and_odd_types():
    arr = _labels(4).astype(np.float64)
    arr[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        validate_labels(arr, "2019", "x.nii")
    arr[1, 1, 1] = 1.5
    with pytest.raises(InputError, match="non-integer"):
        validate_labels(arr, "2019", "x.nii")
    with pytest.raises(InputError, match="data type"):
        validate_labels(np.zeros((2, 2, 2), dtype=np.complex64), "2019", "x.nii")
    with pytest.raises(InputError, match="-1"):
        validate_labels(np.array([[[0, -1]]], dtype=np.int16), "2019", "x.nii")


def test_unknown_convention_is_an_input_error():
    with pytest.raises(InputError, match="2020"):
        allowed_labels("2020")
    assert allowed_labels("2023") == {0, 1, 2, 3}


def test_validate_on_fortran_ordered_volumes():
    """NIfTI arrays are Fortran-ordered: validation finds every value in them."""
    arr = np.asfortranarray(np.random.default_rng(0).choice([0, 1, 2, 4], size=(40, 30, 20)).astype(np.uint8))
    assert np.array_equal(validate_labels(arr, "2019"), arr)
    arr[5, 6, 7] = 3
    with pytest.raises(InputError, match=r"\[3\]"):
        validate_labels(arr, "2019")


# --- The convention table: every convention, 2024's resection cavity, signatures of another convention.

from gliocascade.labels import (CONVENTIONS, READABLE, WRITABLE, convention, region_masks,  # noqa: E402
                                signature_warning)
from gliocascade.phantom import make_phantom  # noqa: E402


@pytest.fixture(scope="module")
def phantom_2019() -> np.ndarray:
    return make_phantom(3, (40, 40, 28)).labels


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_convention_round_trips_the_regions_of_a_phantom(name, phantom_2019):
    labels = convert_labels(phantom_2019, "2019", name)
    assert set(np.unique(labels)) <= convention(name).written_values
    regions = labels_to_regions(labels, name)
    assert np.array_equal(regions, labels_to_regions(phantom_2019, "2019"))
    if convention(name).writable:
        assert np.array_equal(regions_to_labels(regions, name), labels)
    else:
        with pytest.raises(InputError, match=f"label convention {name} is read only"):
            regions_to_labels(regions, name)
    masks = region_masks(labels, name)
    assert all(np.array_equal(masks[r], regions[i]) for i, r in enumerate(("WT", "TC", "ET")))


def test_2024_resection_cavity_is_its_own_region_and_never_written(phantom_2019):
    labels = convert_labels(phantom_2019, "2019", "2024")
    labels[:4, :4, :4] = 4  # a cavity away from the tumour
    masks = region_masks(labels, "2024")
    assert list(masks) == ["WT", "TC", "ET", "RC"]
    assert np.array_equal(masks["RC"], labels == 4)
    assert not np.any(masks["WT"] & masks["RC"])
    assert np.array_equal(masks["WT"], np.isin(labels, [1, 2, 3]))
    assert np.array_equal(masks["TC"], np.isin(labels, [1, 3]))
    written = regions_to_labels(labels_to_regions(labels, "2024"), "2024")
    assert 4 not in np.unique(written) and np.array_equal(written > 0, masks["WT"])
    assert not np.any(convert_labels(labels, "2024", "2019")[:4, :4, :4])  # not tumour in 2019


def test_2024_value_outside_the_convention_is_refused():
    arr = np.array([[[0, 1, 2, 3, 4, 5]]], dtype=np.uint8)
    with pytest.raises(InputError, match=r"seg.nii.gz: label values \[5\] are outside the BraTS 2024"):
        validate_labels(arr, "2024", "seg.nii.gz")


def test_a_2019_map_declared_2024_is_warned_about_naming_both_readings(caplog, phantom_2019):
    caplog.set_level("WARNING", logger="gliocascade.labels")
    validate_labels(phantom_2019, "2024", "ref.nii.gz")  # values 0/1/2/4 all fit 2024
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("ref.nii.gz: declared label convention 2024") and "\n" not in message
    assert "2019 map" in message and "post-operative" in message
    caplog.clear()
    for labels, name in ((convert_labels(phantom_2019, "2019", "2024"), "2024"), (phantom_2019, "2019")):
        validate_labels(labels, name)
    with_both = convert_labels(phantom_2019, "2019", "2024")
    with_both[0, 0, 0] = 4
    validate_labels(with_both, "2024")
    assert caplog.records == []
    assert signature_warning(with_both, "2024") is None


def test_schemas_and_cli_accept_exactly_the_table():
    """Both Nextflow schemas and the CLI choices come from (or agree with) labels.py's table."""
    import json
    from pathlib import Path

    from gliocascade import cli

    root = Path(__file__).resolve().parents[1]
    sheet = json.loads((root / "assets" / "schema_input.json").read_text())
    assert sheet["items"]["properties"]["label_convention"]["enum"] == list(READABLE)
    params = json.loads((root / "nextflow_schema.json").read_text())
    found = [p["enum"] for d in params["$defs"].values() for k, p in d["properties"].items()
             if k == "label_convention"]
    assert found == [list(WRITABLE)]
    assert list(cli.CONVENTION.choices) == list(READABLE) and list(cli.WRITTEN_CONVENTION.choices) == list(WRITABLE)
    assert "2024" in READABLE and "2024" in WRITABLE


def test_2015_labels_count_non_enhancing_tumour_in_wt_and_tc():
    """A hand-built 2015 map with known counts: 1 necrosis x5, 2 oedema x7, 3 non-enhancing x3, 4 enhancing x2."""
    flat = np.array([0] * 11 + [1] * 5 + [2] * 7 + [3] * 3 + [4] * 2, dtype=np.uint8)
    labels = flat.reshape(4, 7, 1)
    wt, tc, et = labels_to_regions(validate_labels(labels, "2015"), "2015")
    assert (wt.sum(), tc.sum(), et.sum()) == (17, 10, 2)
    as_2019 = convert_labels(labels, "2015", "2019")
    assert np.array_equal(as_2019, np.where(labels == 3, 1, labels))  # non-enhancing joins the core
    assert np.array_equal(labels_to_regions(as_2019, "2019"), np.stack([wt, tc, et]))
    with pytest.raises(InputError, match=r"label values \[3\] are outside the BraTS 2019"):
        validate_labels(labels, "2019", "OTMultiClass.nii.gz")


def test_expert_2015_maps_region_volumes_equal_numpy_counts(data_dir):
    import nibabel as nib

    from gliocascade.io import read_labels

    cases = sorted((data_dir / "expert_flair_t1c").glob("*/OTMultiClass.nii.gz"))
    assert len(cases) == 4
    for path in cases:
        raw = np.asanyarray(nib.load(str(path)).dataobj)
        labels, _ = read_labels(path, "2015")
        wt, tc, et = labels_to_regions(labels, "2015")
        assert wt.sum() == np.count_nonzero(np.isin(raw, [1, 2, 3, 4])) > 0
        assert tc.sum() == np.count_nonzero(np.isin(raw, [1, 3, 4]))
        assert et.sum() == np.count_nonzero(raw == 4)
        if 3 in np.unique(raw):
            with pytest.raises(InputError, match=str(path)):
                read_labels(path, "2019")


def test_a_2023_map_declared_2015_is_warned_about():
    labels = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)  # ET = 3 in 2023; non-enhancing in 2015
    warning = signature_warning(labels, "2015", "seg.nii.gz")
    assert warning is not None and "2023" in warning and "without enhancing tumour" in warning
    assert signature_warning(labels, "2023") is None
    assert signature_warning(np.array([[[0, 1, 2, 3, 4]]], dtype=np.uint8), "2015") is None
