"""Model folders: round trip, and refusal of missing, changed, corrupt, pickled or mismatched weights."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from gliocascade.configs import load_config
from gliocascade.errors import InputError
from gliocascade.model_io import load_model, load_weights, write_model_folder
from gliocascade.networks import build_cascade
from gliocascade.provenance import sha256_file


@pytest.fixture
def folder(tmp_path):
    cfg = load_config("tiny")
    states = []
    for seed in range(3):
        torch.manual_seed(seed)
        states.append(build_cascade(cfg).state_dict())
    card = {"label_convention": "2023", "split": {"train": ["a"], "val": []}, "et_threshold": 12, "source": "x"}
    write_model_folder(tmp_path / "m", cfg, {"model": states[0], "epoch": 5}, states, card)
    return tmp_path / "m", states


def _first_param(net):
    return next(iter(net.state_dict().values()))


def test_round_trip(folder):
    path, states = folder
    doc = json.loads((path / "model.json").read_text())
    assert doc["label_convention"] == "2023" and doc["et_threshold"] == 12 and doc["split"]["train"] == ["a"]
    assert doc["data_card"]["source"] == "x"
    assert set(doc["sha256"]) == {"checkpoint.pt", "snapshots/000.pt", "snapshots/001.pt", "snapshots/002.pt"}
    m = load_model(path)
    assert m.config["widths1"] == [8, 16, 32] and m.folder == path
    assert len(m.networks) == 3 and all(not n.training for n in m.networks)
    for net, st in zip(m.networks, states):  # snapshots in order
        assert torch.equal(_first_param(net), next(iter(st.values())))
    with torch.no_grad():
        out = m.networks[0](torch.zeros(1, 4, 8, 8, 8))
    assert set(out) == {"stage1", "stage2"}


def test_checkpoint_used_without_snapshots(tmp_path):
    cfg = load_config("tiny")
    torch.manual_seed(7)
    st = build_cascade(cfg).state_dict()
    write_model_folder(tmp_path / "m", cfg, st, [], {})
    m = load_model(tmp_path / "m")
    assert len(m.networks) == 1 and torch.equal(_first_param(m.networks[0]), next(iter(st.values())))
    # plain torch.load with weights_only and no allow-listed globals reads it
    raw = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)
    assert set(raw) >= {"model", "network_config"}


def test_missing_model_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="model.json missing"):
        load_model(tmp_path / "empty")


def test_changed_file_refused(folder):
    path, _ = folder
    f = path / "snapshots" / "001.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256") as exc:
        load_model(path)
    assert "001.pt" in str(exc.value)


def _rehash(path, rel):
    doc = json.loads((path / "model.json").read_text())
    doc["sha256"][rel] = sha256_file(path / rel)
    (path / "model.json").write_text(json.dumps(doc))


class Payload:
    """An arbitrary Python object: unpickling it could run code, so loading must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_object_refused_even_with_matching_hash(folder, capsys):
    path, states = folder
    torch.save({"model": states[0], "network_config": "{}", "extra": Payload()}, path / "snapshots" / "000.pt")
    _rehash(path, "snapshots/000.pt")
    with pytest.raises(InputError, match="refused") as exc:
        load_model(path)
    assert "000.pt" in str(exc.value)
    assert "unpickled!" not in capsys.readouterr().out
    with open(path / "plain.pkl", "wb") as fh:
        pickle.dump(Payload(), fh)
    with pytest.raises(InputError):
        load_weights(path / "plain.pkl")


def test_corrupt_file_refused_even_with_matching_hash(folder):
    path, _ = folder
    f = path / "snapshots" / "002.pt"
    f.write_bytes(f.read_bytes()[:1000])
    _rehash(path, "snapshots/002.pt")
    with pytest.raises(InputError, match="corrupt"):
        load_model(path)


def test_other_config_refused(folder):
    path, _ = folder
    doc = json.loads((path / "model.json").read_text())
    doc["config"]["widths2"] = [32, 64, 128]
    (path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="another config.*widths2"):
        load_model(path)
    paper = load_config("paper")
    with pytest.raises(InputError, match="another config"):
        load_weights(path / "checkpoint.pt", paper)


@pytest.mark.parametrize("change", [{"sha256": []}, {"config": []}, {"snapshots": "000.pt"},
                                    {"snapshots": ["../elsewhere.pt"]}, {"checkpoint": "/abs/checkpoint.pt"}])
def test_malformed_model_json_is_a_one_line_error(tmp_path, change):
    """Wrong types or weight paths outside the folder in model.json are refused, never a traceback."""
    import json as _json

    from gliocascade.errors import InputError
    from gliocascade.model_card import read_model_json

    folder = tmp_path / "m"
    folder.mkdir()
    doc = {"format": "gliocascade-model", "config": {"name": "tiny"}, "sha256": {}, "checkpoint": "checkpoint.pt"}
    doc.update(change)
    (folder / "model.json").write_text(_json.dumps(doc))
    with pytest.raises(InputError, match="model.json"):
        read_model_json(folder)
