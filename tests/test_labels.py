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
