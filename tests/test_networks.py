"""The cascade against Tables 1 and 2 of the paper: every row's output size, decoder 2, parameter counts."""
from __future__ import annotations

import json

import pytest
import torch

from gliocascade.configs import load_config
from gliocascade.networks import build_cascade, layer_sizes, parameter_counts


def _table(prefix: str, w: list[int], s: int = 128, decoder2: bool = False) -> list[tuple[str, tuple]]:
    """Rows of Table 1 (w = 16..128) or Table 2 (w = 32..256) as written in the paper."""
    h = [s, s // 2, s // 4, s // 8]
    rows = [("InitConv", (w[0], h[0], h[0], h[0]))]
    for i in range(4):
        rows.append((f"EnBlock{i + 1}", (w[i], h[i], h[i], h[i])))
        if i < 3:
            rows.append((f"EnDown{i + 1}", (w[i + 1], h[i + 1], h[i + 1], h[i + 1])))
    for suffix in ([""] + ([".1"] if decoder2 else [])):
        for i in (3, 2, 1):
            rows.append((f"DeUp{i}{suffix}", (w[i - 1], h[i - 1], h[i - 1], h[i - 1])))
            rows.append((f"DeBlock{i}{suffix}", (w[i - 1], h[i - 1], h[i - 1], h[i - 1])))
        rows.append((f"EndConv{suffix}", (3, s, s, s)))
        rows.append((f"Sigmoid{suffix}", (3, s, s, s)))
    return [(f"{prefix}.{n}", shape) for n, shape in rows]


def test_paper_rows_match_tables_1_and_2_in_training():
    got = layer_sizes(load_config("paper"), (128, 128, 128), training=True)
    want = _table("stage1", [16, 32, 64, 128]) + _table("stage2", [32, 64, 128, 256], decoder2=True)
    assert got == want


def test_decoder2_rows_absent_at_inference():
    got = layer_sizes(load_config("paper"), (128, 128, 128), training=False)
    names = [n for n, _ in got]
    assert not any(n.endswith(".1") for n in names)
    assert got == _table("stage1", [16, 32, 64, 128]) + _table("stage2", [32, 64, 128, 256])


def test_decoder2_runs_only_in_training():
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = build_cascade(cfg)
    calls = []
    model.stage2.decoder2.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(1, 4, 16, 16, 16)
    out = model.train()(x)
    assert set(out) == {"stage1", "stage2", "stage2_aux"} and len(calls) == 1
    assert out["stage2_aux"].shape == (1, 3, 16, 16, 16)
    assert not torch.equal(out["stage2_aux"], out["stage2"])
    with torch.no_grad():
        out = model.eval()(x)
    assert set(out) == {"stage1", "stage2"} and len(calls) == 1
    for v in out.values():
        assert float(v.min()) >= 0 and float(v.max()) <= 1  # sigmoid probabilities


def test_stage2_sees_images_and_stage1_maps():
    with torch.device("meta"):
        m = build_cascade(load_config("paper"))
    assert m.stage2.encoder.init_conv.conv.in_channels == 7
    assert m.stage1.encoder.init_conv.conv.in_channels == 4
    assert isinstance(m.stage1.encoder.init_conv.dropout, torch.nn.Dropout3d)
    assert m.stage1.encoder.init_conv.dropout.p == pytest.approx(0.2)


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k ** 3 + cout


def _expected_counts(w: list[int], blocks: list[int], cin: int, decoder2: bool) -> int:
    """Parameter count written out from the table rows (conv weights + biases, GN affine)."""
    block = lambda c: 2 * _conv(c, c, 3) + 2 * 2 * c  # noqa: E731
    n = _conv(cin, w[0], 3)
    n += sum(b * block(c) for b, c in zip(blocks, w))
    n += sum(_conv(w[i], w[i + 1], 3) for i in range(len(w) - 1))
    dec = sum(_conv(w[i], w[i - 1], 1) + _conv(w[i - 1], w[i - 1], 2) + block(w[i - 1]) for i in range(1, len(w)))
    dec += _conv(w[0], 3, 1)
    dec2 = sum(_conv(w[i], w[i - 1], 1) + block(w[i - 1]) for i in range(1, len(w))) + _conv(w[0], 3, 1)
    return n + dec + (dec2 if decoder2 else 0)


def test_parameter_counts_exact():
    with torch.device("meta"):
        counts = parameter_counts(build_cascade(load_config("paper")))
    assert counts["stage1"] == _expected_counts([16, 32, 64, 128], [1, 2, 2, 4], 4, False) == 4_747_331
    assert counts["stage2_inference"] == _expected_counts([32, 64, 128, 256], [1, 2, 2, 4], 7, False) == 18_977_443
    assert counts["stage2_training"] == _expected_counts([32, 64, 128, 256], [1, 2, 2, 4], 7, True) == 20_183_334


def test_input_must_be_a_multiple_of_the_divisor():
    cfg = load_config("tiny")
    assert cfg["divisor"] == 4
    with pytest.raises(ValueError, match="multiple of 4"):
        build_cascade(cfg).eval()(torch.zeros(1, 4, 16, 16, 18))


def test_checkpointing_gives_the_same_gradients():
    cfg = load_config("tiny")
    torch.manual_seed(1)
    a = build_cascade(cfg)
    b = build_cascade(cfg)
    b.load_state_dict(a.state_dict())
    b.set_checkpointing(True)
    x = torch.randn(1, 4, 16, 16, 16)
    for m in (a, b):
        m.train()
        sum(v.sum() for v in m(x).values()).backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_inference_in_place_path_equals_the_autograd_path():
    """Without autograd, ReLU and the residual/skip additions reuse buffers: same outputs, input untouched."""
    cfg = load_config("tiny")
    torch.manual_seed(2)
    net = build_cascade(cfg).eval()
    x = torch.randn(1, 4, 16, 16, 16)
    keep = x.clone()
    with torch.enable_grad():
        ref = {k: v.detach() for k, v in net(x).items()}
    with torch.inference_mode():
        fast = net(x)
    assert torch.equal(x, keep)
    for k in ref:
        torch.testing.assert_close(fast[k], ref[k], rtol=0, atol=0, msg=k)


def test_model_summary_cli(cli):
    res = cli("model-summary", "--config", "paper")
    assert res.exit_code == 0, res.output
    assert "stage2.DeBlock1.1" in res.output and "32x128x128x128" in res.output
    assert "(4747331)" in res.output and "(18977443)" in res.output and "(20183334)" in res.output


def test_model_summary_bad_config(cli, tmp_path):
    res = cli("model-summary", "--config", str(tmp_path / "nope.json"))
    assert res.exit_code == 2


def test_trained_end_to_end_stage2_loss_reaches_stage1():
    torch.manual_seed(0)
    model = build_cascade(load_config("tiny")).train()
    model(torch.randn(1, 4, 16, 16, 16))["stage2"].sum().backward()
    g = model.stage1.encoder.init_conv.conv.weight.grad
    assert g is not None and float(g.abs().sum()) > 0  # stage-1 maps are not detached


def test_small_config_runs_its_crops_and_is_between_tiny_and_paper():
    """`small` (real data on 2 cores): its 48^3 crop fits its four levels and a forward pass gives
    three region maps of the crop's size; its size lies between tiny's and the paper's."""
    small = load_config("small")
    assert small["levels"] == 4 and all(c % small["divisor"] == 0 for c in small["crop"])
    with torch.device("meta"):
        sizes = {n: parameter_counts(build_cascade(load_config(n)))["total_training"] for n in ("tiny", "small", "paper")}
    assert sizes["tiny"] < sizes["small"] < sizes["paper"]
    net = build_cascade(small).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, small["in_channels"], *small["crop"]))
    assert tuple(out["stage2"].shape) == (1, 3, *small["crop"])


def test_presence_flags_read_which_modalities_are_present_and_are_off_by_default():
    """The ``presence_flags`` key adds one input map per modality to each stage (1 present, 0 absent,
    read from the all-zero channel an absent modality is); off, the paper's parameter count stays."""
    from gliocascade.configs import network_keys
    from gliocascade.networks import presence_maps

    x = torch.randn(2, 4, 8, 8, 8)
    x[0, 1] = 0  # case 0 lacks T1Gd
    x[1, 3] = 0  # case 1 lacks FLAIR
    maps = presence_maps(x.to(memory_format=torch.channels_last_3d))
    assert maps.is_contiguous(memory_format=torch.channels_last_3d)
    assert maps[:, :, 0, 0, 0].tolist() == [[1, 0, 1, 1], [1, 1, 1, 0]]
    assert bool((maps == maps[:, :, :1, :1, :1]).all())  # constant over space
    tiny, flagged = load_config("tiny"), {**load_config("tiny"), "presence_flags": True}
    assert "presence_flags" not in network_keys(tiny) and network_keys(flagged)["presence_flags"] is True
    plain, with_flags = build_cascade(tiny), build_cascade(flagged)
    assert with_flags.stage1.encoder.init_conv.conv.in_channels == 8 == 2 * plain.stage1.encoder.init_conv.conv.in_channels
    assert with_flags.stage2.encoder.init_conv.conv.in_channels == 11
    with torch.no_grad():
        with_flags.eval()
        out = with_flags(torch.cat([x, x]))["stage2"]
    assert tuple(out.shape) == (4, 3, 8, 8, 8)


@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_a_boolean_config_key_given_as_anything_else_is_refused(tmp_path, value):
    """A JSON config saying "presence_flags": "false" must not switch the flags on (bool("false") is True):
    the file is refused with one line naming the key."""
    from gliocascade.errors import InputError

    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"base": "tiny", "presence_flags": value}))
    with pytest.raises(InputError, match=r"presence_flags must be true or false") as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    path.write_text(json.dumps({"base": "tiny", "presence_flags": True}))
    assert load_config(path)["presence_flags"] is True
