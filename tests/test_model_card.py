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


# --------------------------------------------------------------------------- model.json: one reader, one writer

def test_model_card_module_imports_no_torch():
    """model.json is read and written where torch is absent (tune-threshold, postprocess, reports)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "python") + os.pathsep + env.get("PYTHONPATH", "")
    code = ("import sys, gliocascade.model_card, gliocascade.threshold_tuning, gliocascade.postprocess; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _weights(folder, names):
    import hashlib

    hashes = {}
    for i, rel in enumerate(names):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([i + 1]) * (100 + i))
        hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def test_model_json_written_and_read_back_with_the_weights_sha256(tmp_path):
    from gliocascade.model_card import read_card, read_model_json, write_model_json

    hashes = _weights(tmp_path, ["checkpoint.pt", "snapshots/001.pt", "snapshots/002.pt"])
    card = {"label_convention": "2023", "orientation": "RAS", "split": {"train": ["a"], "val": ["b"]},
            "modalities_used": ["t1", "t1ce"], "modalities_required": ["t1ce"], "modality_dropout": 0.25,
            "et_threshold": 40, "source": "cases/", "n_cases": 2, "synthetic": False}
    # a hash the caller already knows is recorded as given (the file is not read again)
    known = {"snapshots/002.pt": "f" * 64}
    write_model_json(tmp_path, {"name": "tiny"}, card, "checkpoint.pt", ["snapshots/001.pt", "snapshots/002.pt"], known)
    doc = read_model_json(tmp_path)
    assert doc["sha256"] == {"checkpoint.pt": hashes["checkpoint.pt"], "snapshots/001.pt": hashes["snapshots/001.pt"],
                             "snapshots/002.pt": "f" * 64}
    assert (doc["label_convention"], doc["orientation"], doc["et_threshold"]) == ("2023", "RAS", 40)
    assert doc["modalities_required"] == ["t1ce"] and doc["split"]["val"] == ["b"]
    assert doc["data_card"] == {"source": "cases/", "n_cases": 2, "synthetic": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "model.json", "snapshots"]  # no temporaries
    shown = read_card(tmp_path)
    assert (shown["et_threshold"], shown["modality_dropout"], shown["source"]) == (40, 0.25, "cases/")


def test_model_json_update_keeps_the_hashes_and_refuses_a_broken_card(tmp_path):
    import json

    import pytest

    from gliocascade.errors import InputError
    from gliocascade.model_card import et_threshold_of, read_model_json, update_model_json, write_model_json

    _weights(tmp_path, ["checkpoint.pt"])
    write_model_json(tmp_path, {"name": "tiny"}, {"source": "x"}, "checkpoint.pt", [])
    before = read_model_json(tmp_path)
    assert et_threshold_of(tmp_path) is None and "et_threshold" not in before
    update_model_json(tmp_path, {"et_threshold": 130, "et_threshold_tuning": {"cases": 5}})
    after = read_model_json(tmp_path)
    assert et_threshold_of(tmp_path) == 130 and after["et_threshold_tuning"] == {"cases": 5}
    assert {k: v for k, v in after.items() if not k.startswith("et_threshold")} == before

    for bad in (True, -1, "130"):
        (tmp_path / "model.json").write_text(json.dumps({**before, "et_threshold": bad}))
        with pytest.raises(InputError, match="et_threshold") as err:
            et_threshold_of(tmp_path)
        assert err.value.path == str(tmp_path / "model.json") and "\n" not in str(err.value)
    # a card weights cannot be loaded from is refused, and left as it was
    hand_made = json.dumps({"config": {"name": "tiny"}, "et_threshold": 5})
    (tmp_path / "model.json").write_text(hand_made)
    with pytest.raises(InputError, match="not a gliocascade model.json"):
        update_model_json(tmp_path, {"et_threshold": 7})
    assert (tmp_path / "model.json").read_text() == hand_made
    assert read_model_json(tmp_path, check=False)["et_threshold"] == 5  # shown in reports all the same
