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
