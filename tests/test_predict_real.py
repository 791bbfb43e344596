"""The real BraTS 2023 case through predict with the `paper` cascade (random weights): geometry, CPU path.

No accuracy is expected from random weights; the test checks that a full-size real case runs,
that the label map carries the input's grid and header, and that the optimised CPU path
(channels-last) gives the plain eager fp32 probabilities within 1e-3 and >= 99.9 % equal labels.
It costs two whole-brain forwards of the paper network (tta 1), about a minute each on 2 cores.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

CASE = "BraTS-GLI-00001-000"


@pytest.fixture(scope="module")
def paper_model(tmp_path_factory):
    from gliocascade.configs import load_config
    from gliocascade.model_io import write_model_folder
    from gliocascade.networks import build_cascade

    cfg = load_config("paper")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("paper_random")
    write_model_folder(folder, cfg, {"model": build_cascade(cfg).state_dict()}, [], {"label_convention": "2019"})
    return folder


@pytest.mark.slow
@pytest.mark.realdata
def test_real_case_paper_cascade(data_dir, paper_model, tmp_path):
    from gliocascade.cpu_speed import prepare
    from gliocascade.io import discover_case
    from gliocascade.predict import case_probabilities, load_models, predict_case, read_case

    case = discover_case(data_dir / "brats_space" / CASE)
    assert case.case_id == CASE and case.label_convention == "2023"
    models = load_models([paper_model], "cpu")
    out = tmp_path / "out"
    label_path = predict_case(case.images, case.case_id, models, out, tta=1, device="cpu",
                              save_probabilities=True, label_convention="2023", cpu_mode="channels_last",
                              precision="fp32")
    ref = nib.load(case.images["t1ce"])
    pred = nib.load(label_path)
    assert pred.shape == ref.shape == (240, 240, 155)
    assert np.array_equal(pred.affine, ref.affine)
    assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(ref.affine)
    for key in ("qform_code", "sform_code", "pixdim", "srow_x", "srow_y", "srow_z", "qoffset_x", "qoffset_y",
                "qoffset_z", "quatern_b", "quatern_c", "quatern_d"):
        assert np.array_equal(pred.header[key], ref.header[key]), key
    fast = np.moveaxis(np.asarray(nib.load(out / f"{CASE}_prob.nii.gz").dataobj), -1, 0)
    # The reference: the plain eager fp32 path on the same networks.
    runner = prepare(models[0].networks, torch.device("cpu"), cpu_mode="eager")
    eager, info = case_probabilities(read_case(case.images, CASE), models, 1, runner, torch.device("cpu"))
    assert all(s % 8 == 0 for s in info["padded_shape"])
    # The crop is smaller than the whole grid (cropping saves work) yet holds every brain voxel.
    assert np.prod(info["padded_shape"]) < 0.6 * np.prod(ref.shape)
    from gliocascade.labels import regions_to_labels

    labels = np.asarray(pred.dataobj)
    diff = float(np.abs(fast - eager).max())
    same = float(np.mean(labels == regions_to_labels(eager > 0.5, "2023")))
    print(f"\nCPU path vs eager fp32: max |dp| = {diff:.2e}, identical labels {same:.6%}")
    assert diff <= 1e-3
    assert same >= 0.999
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
