"""bf16 arithmetic: which precision `auto` picks, that fp32 is untouched, and the accuracy gate.

The gate runs where the CPU has native bf16 and skips with the reason elsewhere: bf16 and fp32
labels of the trained tiny model agree on >= 99.9 % of brain voxels and Dice per region differs
by <= 0.005, on unseen phantoms and on the real BraTS-space cases (the tiny model is trained on
phantoms only, so the real cases test agreement, not accuracy).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from gliocascade.precision import native_cpu_bf16, resolve_precision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NATIVE = native_cpu_bf16()
needs_bf16 = pytest.mark.skipif(NATIVE is None, reason="this CPU has no native bf16 (no avx512_bf16 or amx_bf16 "
                                                       "in /proc/cpuinfo): the bf16 gate cannot be measured here")


def test_this_machine_says_which_precision_auto_picks(capsys):
    chosen = resolve_precision("auto", CPU)
    with capsys.disabled():  # CI's log shows whether the gate below ran or skipped
        print(f"\nprecision auto on this CPU: {chosen.name} ({chosen.reason})")
    assert chosen.bf16 == (NATIVE is not None)


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "fma"}, "fp32"), ({"avx512f", "avx512bw"}, "fp32"),
    ({"avx512f", "avx512_bf16"}, "bf16"), ({"amx_tile", "amx_bf16"}, "bf16")])
def test_auto_follows_the_cpu_flags(flags, expected):
    chosen = resolve_precision("auto", CPU, flags)
    assert chosen.name == expected and chosen.reason.startswith("auto")


def test_auto_names_amx_where_the_cpu_has_both_units():
    """Sapphire Rapids and later list avx512_bf16 too; oneDNN runs the tile units, so the log says so."""
    chosen = resolve_precision("auto", CPU, {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    assert chosen.name == "bf16" and "amx_bf16" in chosen.reason
    assert native_cpu_bf16({"avx512_bf16"}) == "avx512_bf16"


def test_explicit_choices_and_cuda():
    assert resolve_precision("fp32", CPU, {"avx512_bf16"}).name == "fp32"
    emulated = resolve_precision("bf16", CPU, {"avx2"})
    assert emulated.name == "bf16" and "emulated" in emulated.reason
    assert resolve_precision("auto", CUDA).name == "bf16"
    with pytest.raises(ValueError):
        resolve_precision("fp16", CPU)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    from gliocascade.precision import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_accurate_group_norm_keeps_float32_statistics_of_bf16_activations():
    from gliocascade.cpu_speed import AccurateGroupNorm

    torch.manual_seed(0)
    x = (torch.randn(1, 8, 40, 40, 40) * 3 + 50).bfloat16()  # large mean: bf16 statistics would be off
    gn = AccurateGroupNorm(4, 8).eval()
    with torch.no_grad():
        out = gn(x)
        ref = torch.nn.functional.group_norm(x.double(), 4, eps=gn.eps)
    assert out.dtype == torch.bfloat16
    # only bf16 roundings of the deviations, the scale and the result remain (each relative 2^-9),
    # not errors of the statistics: those would shift all values alike (bf16 statistics of this
    # input are off by ~0.1)
    assert float(((out.double() - ref).abs() - 0.02 * ref.abs()).max()) < 0.01
    assert abs(float(out.double().mean()) - float(ref.mean())) < 1e-3
    assert abs(float(out.double().std()) - float(ref.std())) < 2e-3


def _predict(case, model, out, precision):
    from gliocascade.predict import load_models, predict_case

    path = predict_case(case.images, case.case_id, load_models([model], "cpu"), out, tta=2, device="cpu",
                        label_convention=case.label_convention or "2019", precision=precision)
    return np.asarray(nib.load(path).dataobj), json.loads((out / "provenance_predict.json").read_text())


def test_auto_without_native_bf16_is_fp32_byte_for_byte(tmp_path, tiny_model, monkeypatch):
    """Forcing the capability check off: auto writes exactly the fp32 labels and says why."""
    import gliocascade.precision as precision
    from gliocascade.io import discover_case
    from gliocascade.phantom import write_phantoms

    write_phantoms(tmp_path / "cases", n=1, seed=1200, shape=(64, 64, 48))
    case = discover_case(next((tmp_path / "cases").iterdir()))
    fp32, prov32 = _predict(case, tiny_model, tmp_path / "fp32", "fp32")
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=None: {"avx2", "fma"})
    auto, prov = _predict(case, tiny_model, tmp_path / "auto", "auto")
    assert np.array_equal(auto, fp32)
    assert prov["parameters"]["precision"] == prov32["parameters"]["precision"] == "fp32"
    assert "no native bf16" in prov["parameters"]["precision_reason"]


def _gate_cases(data_dir, tmp_path):
    from gliocascade.io import discover_case
    from gliocascade.phantom import write_phantoms

    write_phantoms(tmp_path / "phantoms", n=3, seed=1300, shape=(64, 64, 48))
    cases = [(discover_case(p), None) for p in sorted((tmp_path / "phantoms").iterdir())]
    real = data_dir / "brats_space" / "TCGA-FG-6692"
    if real.is_dir():
        case = discover_case(real)
        cases.append((case, nib.load(real / "fusion_simple.nii.gz")))
    gli = data_dir / "brats_space" / "BraTS-GLI-00001-000"
    if gli.is_dir():
        cases.append((discover_case(gli), None))
    return cases


@needs_bf16
@pytest.mark.slow
def test_bf16_labels_agree_with_fp32_on_phantoms_and_real_cases(data_dir, tmp_path, tiny_model):
    from gliocascade.labels import labels_to_regions
    from gliocascade.metrics import dice

    for case, reference in _gate_cases(data_dir, tmp_path):
        convention = case.label_convention or "2019"
        fp32, _ = _predict(case, tiny_model, tmp_path / case.case_id / "fp32", "fp32")
        bf16, prov = _predict(case, tiny_model, tmp_path / case.case_id / "bf16", "bf16")
        assert prov["parameters"]["precision"] == "bf16"
        brain = np.any([np.asarray(nib.load(p).dataobj) != 0 for p in case.images.values()], axis=0)
        agree = float(np.mean(fp32[brain] == bf16[brain]))
        assert agree >= 0.999, (case.case_id, agree)
        if reference is None and case.seg is not None:
            reference = nib.load(case.seg)
        if reference is not None:
            truth = labels_to_regions(np.asarray(reference.dataobj), case.label_convention or "2019")
            for r, (a, b) in enumerate(zip(labels_to_regions(fp32, convention), labels_to_regions(bf16, convention))):
                assert abs(dice(a, truth[r]) - dice(b, truth[r])) <= 0.005, (case.case_id, r)


# --------------------------------------------------------------------------- training

def _small_train(data, out, precision, epochs, resume=False):
    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.train import train

    cfg = {**load_config("tiny"), "crop": [16, 16, 16], "batch_size": 1}
    return train(cases_from_folder(data), out, cfg, epochs=epochs, steps_per_epoch=2, seed=3, device="cpu",
                 precision=precision, resume=resume, progress=False, source=str(data))


@pytest.fixture(scope="module")
def small_cases(tmp_path_factory):
    from gliocascade.phantom import write_phantoms

    root = tmp_path_factory.mktemp("precision_train")
    write_phantoms(root, n=2, seed=40, shape=(32, 32, 24))
    return root


def _weights(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_training_resume_is_bit_identical_in_each_precision(small_cases, tmp_path, precision):
    from gliocascade.model_card import read_model_json

    _small_train(small_cases, tmp_path / "full", precision, 2)
    _small_train(small_cases, tmp_path / "split", precision, 1)
    _small_train(small_cases, tmp_path / "split", "auto", 2, resume=True)  # auto keeps the checkpoint's
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float32 for v in a.values() if v.is_floating_point())  # fp32 master weights
    assert read_model_json(tmp_path / "split")["data_card"]["precision"] == precision


def test_resume_in_another_precision_is_refused(small_cases, tmp_path):
    from gliocascade.errors import InputError

    _small_train(small_cases, tmp_path / "m", "fp32", 1)
    with pytest.raises(InputError, match="trained in fp32"):
        _small_train(small_cases, tmp_path / "m", "bf16", 2, resume=True)


@needs_bf16
def test_bf16_training_differs_from_fp32(small_cases, tmp_path):
    """bf16 really runs under autocast (identical weights would mean the flag was ignored)."""
    _small_train(small_cases, tmp_path / "fp32", "fp32", 1)
    _small_train(small_cases, tmp_path / "bf16", "bf16", 1)
    a, b = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert any(not torch.equal(a[k], b[k]) for k in a)
