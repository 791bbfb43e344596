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


def test_provenance_of_a_run_names_the_final_outputs_not_the_staging_folders(tmp_path, random_tiny_model, cli):
    import json

    from gliocascade.phantom import write_phantoms

    case = write_phantoms(tmp_path / "ph", n=1, seed=41, shape=(64, 64, 48))[0]
    files = ",".join(str(case / f"{case.name}_{m}.nii.gz") for m in ("t1", "t1ce", "t2", "flair"))
    sheet = tmp_path / "s.csv"
    sheet.write_text(f"case_id,t1,t1ce,t2,flair,space,seg\nP,{files},brats,{case / (case.name + '_seg.nii.gz')}\n")
    out = tmp_path / "out"
    assert cli("run", "--samplesheet", sheet, "--model", random_tiny_model, "--out", out, "--tta", "1",
               "--device", "cpu").exit_code == 0
    records = sorted((out / "P").glob("provenance_*.json"))
    assert [p.name for p in records] == ["provenance_evaluate.json", "provenance_postprocess.json",
                                         "provenance_predict.json"]
    for p in records:
        text = p.read_text()
        assert ".partial-" not in text, p.name
    pred = json.loads((out / "P" / "provenance_predict.json").read_text())
    assert pred["outputs"]["labels"] == str(out.resolve() / "P" / "P_pred.nii.gz")
