"""The case layout module: the names it makes, the ids it reads back, and where it looks first."""
from __future__ import annotations

from pathlib import Path

import pytest

from gliocascade import layout


@pytest.mark.parametrize("role", [*layout.MODALITIES, "seg"])
def test_each_naming_reads_back_the_case_id_it_wrote(role):
    for naming in layout.SUFFIXES:
        name = layout.image_name("BraTS-GLI-00001-000", role, naming)
        assert name.startswith("BraTS-GLI-00001-000") and name.endswith(".nii.gz")
        if role == "t1ce":
            assert layout.case_id_of_anchor(name) == "BraTS-GLI-00001-000"
            assert layout.case_id_of_anchor(name[: -len(".gz")]) == "BraTS-GLI-00001-000"


def test_the_two_namings_differ_for_every_modality():
    assert [layout.image_name("c", m) for m in layout.MODALITIES] == ["c_t1.nii.gz", "c_t1ce.nii.gz", "c_t2.nii.gz",
                                                                      "c_flair.nii.gz"]
    assert [layout.image_name("c", m, "2023") for m in layout.MODALITIES] == [
        "c-t1n.nii.gz", "c-t1c.nii.gz", "c-t2w.nii.gz", "c-t2f.nii.gz"]


def test_names_that_are_not_a_t1gd_or_a_prediction_give_no_id():
    assert layout.case_id_of_anchor("c_t1.nii.gz") is None
    assert layout.case_id_of_anchor("c_t1ce.mha") is None
    assert layout.case_id_of_prediction("c_seg.nii.gz") is None
    assert layout.case_id_of_prediction(layout.pred_name("case_7")) == "case_7"
    assert layout.case_id_of_prediction("case_7_pred.nii") == "case_7"


def test_find_image_prefers_2019_names_then_compressed_files(tmp_path: Path):
    assert layout.find_image(tmp_path, "c", "t1ce") is None
    (tmp_path / "c-t1c.nii.gz").touch()
    assert layout.find_image(tmp_path, "c", "t1ce").name == "c-t1c.nii.gz"
    (tmp_path / "c_t1ce.nii").touch()
    assert layout.find_image(tmp_path, "c", "t1ce").name == "c_t1ce.nii"
    (tmp_path / "c_t1ce.nii.gz").touch()
    assert layout.find_image(tmp_path, "c", "t1ce").name == "c_t1ce.nii.gz"
    # the brain mask has no 2023 name: asking that naming finds nothing rather than failing
    (tmp_path / layout.brainmask_name("c")).touch()
    assert layout.find_image(tmp_path, "c", "brainmask", ("2023",)) is None
    assert layout.find_image(tmp_path, "c", "brainmask") == tmp_path / "c_brainmask.nii.gz"


def test_case_paths_put_each_output_where_the_output_tree_says(tmp_path: Path):
    paths = layout.case_paths(tmp_path, "P1")
    assert paths.root == tmp_path / "P1"
    assert paths.seg == tmp_path / "P1" / "P1_seg.nii.gz"
    assert paths.seg_native == tmp_path / "P1" / "P1_seg_native.nii.gz"
    assert paths.transform == tmp_path / "P1" / "preprocessed" / "transforms" / "brats_to_native.tfm"
    assert paths.brainmask == tmp_path / "P1" / "preprocessed" / "P1_brainmask.nii.gz"
    assert paths.provenance("preprocess") == tmp_path / "P1" / "preprocessed" / "provenance_preprocess.json"
    assert paths.provenance("predict") == tmp_path / "P1" / "provenance_predict.json"
    assert set(layout.modality_files(paths.converted, "P1")) == set(layout.MODALITIES)


def test_report_roles_name_every_step_record_once():
    assert len(set(layout.REPORT_ROLES)) == len(layout.REPORT_ROLES)
    assert {f"provenance_{s}" for s in layout.STEPS} <= set(layout.REPORT_ROLES)
    assert layout.NATIVE_T1CE_ROLE in layout.REPORT_ROLES
