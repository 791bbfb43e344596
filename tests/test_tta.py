"""Flip TTA and ensembles exactly as DESIGN: first K flips, pass i uses snapshot i mod S with flip i."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from gliocascade.inference import FLIPS, crop_pad, ensemble_probabilities, make_window, tta_passes, uncrop


class StandIn(nn.Module):
    """A small network that is not flip-equivariant (asymmetric kernels), returning the cascade's dict."""

    def __init__(self, seed: int, in_channels: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(in_channels, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(torch.randn(3, generator=g) * 0.1)
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append(x.detach().clone())
        p = torch.sigmoid(self.conv(x))
        return {"stage1": p, "stage2": p}


def _x(shape=(1, 4, 8, 16, 24)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(7))


def _hand_mean(passes: list[tuple[nn.Module, tuple[int, ...]]], x: torch.Tensor) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for net, axes in passes:
            outs.append(torch.flip(net(torch.flip(x, axes))["stage2"], axes) if axes else net(x)["stage2"])
    return torch.stack(outs).mean(0)


def test_flip_table():
    assert FLIPS[0] == () and len(set(FLIPS)) == 8
    assert all(set(a) <= {2, 3, 4} for a in FLIPS)
    assert tta_passes(3, 8) == [(i % 3, FLIPS[i]) for i in range(8)]
    assert [f for _, f in tta_passes(1, 4)] == [(), (2,), (3,), (4,)]
    with pytest.raises(ValueError):
        tta_passes(1, 3)


def test_tta8_is_the_mean_over_flipped_inputs():
    net, x = StandIn(0), _x()
    got = ensemble_probabilities([[net]], x, 8)
    want = _hand_mean([(net, FLIPS[i]) for i in range(8)], x)
    assert torch.allclose(got, want, atol=1e-6)
    # The check can fail: un-flipping the outputs matters.
    wrong = torch.stack([net(torch.flip(x, a))["stage2"] if a else net(x)["stage2"] for a in FLIPS]).mean(0)
    assert (got - wrong.detach()).abs().max() > 1e-3


def test_tta8_differs_from_tta1_on_random_cascade():
    from gliocascade.configs import load_config
    from gliocascade.networks import build_cascade

    torch.manual_seed(0)
    net = build_cascade(load_config("tiny")).eval()
    x = _x((1, 4, 8, 12, 16))
    p1 = ensemble_probabilities([[net]], x, 1)
    p8 = ensemble_probabilities([[net]], x, 8)
    assert p1.shape == p8.shape == (1, 3, 8, 12, 16)
    assert (p1 - p8).abs().max() > 1e-4


def test_eight_snapshots_pair_with_their_flip():
    snaps = [StandIn(s) for s in range(8)]
    x = _x()
    got = ensemble_probabilities([snaps], x, 8)
    for i, net in enumerate(snaps):
        assert len(net.calls) == 1, f"snapshot {i} ran {len(net.calls)} times"
        assert torch.equal(net.calls[0], torch.flip(x, FLIPS[i]) if FLIPS[i] else x), f"snapshot {i} got another flip"
    assert torch.allclose(got, _hand_mean([(snaps[i], FLIPS[i]) for i in range(8)], x), atol=1e-6)


def test_fewer_snapshots_cycle_and_models_are_averaged():
    a = [StandIn(s) for s in range(3)]
    b = [StandIn(10)]
    x = _x()
    got = ensemble_probabilities([a, b], x, 4)
    assert [len(n.calls) for n in a] == [2, 1, 1]  # passes 0 and 3 use snapshot 0
    assert torch.equal(a[0].calls[1], torch.flip(x, FLIPS[3]))
    assert len(b[0].calls) == 4
    passes = [(a[i % 3], FLIPS[i]) for i in range(4)] + [(b[0], FLIPS[i]) for i in range(4)]
    assert torch.allclose(got, _hand_mean(passes, x), atol=1e-6)


def test_crop_pad_round_trip():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(2, 30, 27, 19)).astype(np.float32)
    mask = np.zeros(vol.shape[1:], bool)
    mask[3:22, 5:26, 2:13] = True
    w = make_window(mask, 8)
    padded = crop_pad(vol, w)
    assert padded.shape[1:] == w.padded_shape and all(s % 8 == 0 for s in padded.shape[1:])
    assert w.padded_shape == (24, 24, 16)
    back = uncrop(padded, w)
    assert np.array_equal(back[:, mask], vol[:, mask])
    assert not back[:, ~mask].any()
    assert make_window(np.zeros((4, 4, 4)), 8) is None


# --------------------------------------------------------------------------- through predict_case

def stand_in_model(folder: Path, networks: list[nn.Module], divisor: int = 8):
    """A LoadedModel holding stand-in networks (model.json only for the provenance hash)."""
    from gliocascade.model_io import LoadedModel

    folder.mkdir(parents=True, exist_ok=True)
    card = {"format": "gliocascade-model", "config": {"name": "stand-in"}, "sha256": {}}
    (folder / "model.json").write_text(json.dumps(card))
    return LoadedModel(card=card, config={"name": "stand-in", "divisor": divisor}, networks=networks, folder=folder)


@pytest.mark.parametrize("cpu_mode", ["eager", "channels_last"])
def test_predict_case_tta8_equals_hand_computed(small_phantoms, tmp_path, cpu_mode):
    from gliocascade.data import zscore
    from gliocascade.io import discover_case
    from gliocascade.predict import predict_case, read_case

    case = discover_case(sorted(small_phantoms.iterdir())[0])
    snaps = [StandIn(s) for s in range(8)]
    model = stand_in_model(tmp_path / "m", snaps)
    predict_case(case.images, case.case_id, [model], tmp_path / "out", tta=8, device="cpu",
                 save_probabilities=True, cpu_mode=cpu_mode, precision="fp32")  # the TTA arithmetic, exactly
    probs = np.moveaxis(np.asarray(nib.load(tmp_path / "out" / f"{case.case_id}_prob.nii.gz").dataobj), -1, 0)
    # By hand: z-score, crop to the brain, pad to 8, mean of snapshot i on flip i, uncrop, zero
    # outside the brain (no modality non-zero).
    inp = read_case(case.images, case.case_id)
    norm = zscore(inp.images)
    w = make_window(np.all(inp.images != 0, axis=0), 8)
    x = torch.from_numpy(crop_pad(norm, w))[None]
    for n in snaps:
        n.calls.clear()
    want = uncrop(_hand_mean([(snaps[i], FLIPS[i]) for i in range(8)], x)[0].numpy(), w)
    want *= np.any(inp.images != 0, axis=0)[None]
    assert np.abs(probs - want).max() < 1e-5
    labels = np.asarray(nib.load(tmp_path / "out" / f"{case.case_id}_pred.nii.gz").dataobj)
    from gliocascade.labels import regions_to_labels

    assert np.array_equal(labels, regions_to_labels(want > 0.5))
