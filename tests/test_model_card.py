"""The model card: what a model learned from, and one-line warnings when it is used out of its domain."""
from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np


def _unmarked_copy(case, dest):
    """The same images without the phantom marker: stands in for a real scan."""
    dest.mkdir(parents=True)
    for f in case.iterdir():
        img = nib.load(str(f))
        hdr = img.header.copy()
        hdr["descrip"] = b""
        nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, hdr), str(dest / f.name))
    return dest


def test_phantoms_carry_the_marker(tmp_path):
    from gliocascade.model_card import PHANTOM_MARKER, is_phantom
    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path, n=1, seed=3, shape=(32, 32, 24))[0]
    for f in case.iterdir():
        assert nib.load(str(f)).header["descrip"].tobytes().rstrip(b"\0").decode() == PHANTOM_MARKER
        assert is_phantom(f)
    other = _unmarked_copy(case, tmp_path / "real")
    assert not any(is_phantom(f) for f in other.iterdir())


def test_a_model_trained_on_phantoms_says_so(tiny_model, cli):
    card = json.loads((tiny_model / "model.json").read_text())["data_card"]
    assert card["synthetic"] is True and card["n_cases"] == 8
    result = cli("model-card", tiny_model)
    assert result.exit_code == 0, result.output
    text = result.output
    for fragment in ("synthetic: yes", "cases: 8", "ET threshold: not tuned", "orientation: LPS", "validation Dice",
                     "trained in: fp32"):
        assert fragment in text, fragment


def test_model_card_of_a_folder_without_model_json_is_one_line(tmp_path, cli):
    result = cli("model-card", tmp_path)
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "model.json" in result.output


def test_predict_warns_once_when_a_phantom_model_meets_a_real_scan(tiny_model, tmp_path, caplog):
    from gliocascade.phantom import write_phantoms
    from gliocascade.predict import load_models, predict_case
    from gliocascade.io import discover_case

    case = write_phantoms(tmp_path / "ph", n=1, seed=1001, shape=(64, 64, 48))[0]
    real = _unmarked_copy(case, tmp_path / "real" / case.name)
    models = load_models([tiny_model], "cpu")
    for folder, expect in ((case, False), (real, True)):
        caplog.clear()
        found = discover_case(folder)
        with caplog.at_level(logging.WARNING):
            predict_case(found.images, found.case_id, models, tmp_path / "out" / folder.parent.name, tta=1,
                         device="cpu")
        synthetic = [r for r in caplog.records if "synthetic" in r.getMessage()]
        assert len(synthetic) == int(expect), [r.getMessage() for r in caplog.records]
        prov = json.loads((tmp_path / "out" / folder.parent.name / "provenance_predict.json").read_text())
        assert any("synthetic" in w for w in prov["warnings"]) == expect
        assert any("not tuned" in w for w in prov["warnings"])  # the tiny model's threshold was never tuned


def test_run_says_the_et_threshold_was_never_tuned(tiny_model, tmp_path, cli, caplog):
    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "ph", n=1, seed=1002, shape=(64, 64, 48))[0]
    files = ",".join(str(case / f"{case.name}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair"))
    sheet = tmp_path / "s.csv"
    sheet.write_text(f"case_id,t1,t1ce,t2,flair,space\nP,{files},brats\n")
    with caplog.at_level(logging.INFO):
        result = cli("run", "--samplesheet", sheet, "--model", tiny_model, "--out", tmp_path / "out", "--tta", "1",
                     "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ET threshold 0 voxels" not in text
    assert "ET threshold: not tuned" in text
