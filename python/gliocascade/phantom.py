"""Synthetic BraTS-like cases: a brain with grey/white matter, ventricles and a nested tumour.

No labelled four-modality data can be shipped, so tests, the demo and the learning checks use
these phantoms. They are deterministic by seed (same seed -> same bytes) and vary in tumour
position, size and shape, with the real nesting: an enhancing rim around a necrotic core and
oedema around both. Contrasts mimic T1, T1Gd, T2 and FLAIR; noise and a smooth bias field make
normalisation and augmentation matter.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .geometry import BRATS_SHAPE, brats_affine
from .io import MODALITIES, write_image
from .layout import image_name, seg_name

log = logging.getLogger(__name__)

# Mean intensity of each tissue per modality (arbitrary units, roughly as in BraTS scans).
# Tissues: background, CSF, grey matter, white matter, oedema, enhancing rim, necrosis, scalp, skull.
TISSUES = ("bg", "csf", "gm", "wm", "oedema", "enhancing", "necrosis", "scalp", "skull")
CONTRAST = {
    "t1":    (0.0, 250.0, 550.0, 750.0, 450.0, 500.0, 300.0, 800.0, 120.0),
    "t1ce":  (0.0, 260.0, 560.0, 760.0, 470.0, 1200.0, 280.0, 820.0, 130.0),
    "t2":    (0.0, 1500.0, 850.0, 600.0, 1300.0, 900.0, 1600.0, 700.0, 100.0),
    "flair": (0.0, 150.0, 650.0, 500.0, 1150.0, 800.0, 400.0, 600.0, 90.0),
}


@dataclass
class Phantom:
    """One synthetic case: float32 images per modality, uint8 labels (0/1/2/4), and the affine."""

    case_id: str
    images: dict[str, np.ndarray]
    labels: np.ndarray
    affine: np.ndarray


def _wobbly_radius(rng: np.random.Generator, theta: np.ndarray, phi: np.ndarray, amplitude: float,
                   terms: int = 4) -> np.ndarray:
    """A smooth random function on the sphere (1 + sum of low-order angular waves)."""
    r = np.ones(np.broadcast_shapes(theta.shape, phi.shape), dtype=np.float32)
    for _ in range(terms):
        m, n = rng.integers(1, 4, size=2)
        a = rng.uniform(-amplitude, amplitude)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        r += a * np.sin(m * theta + p1) * np.cos(n * phi + p2)
    return r


def _ellipsoid_distance(grid: tuple[np.ndarray, ...], centre: np.ndarray, radii: np.ndarray,
                        wobble: np.ndarray | None = None) -> np.ndarray:
    """Normalised radial distance (< 1 inside) of an ellipsoid, optionally with a wobbly surface."""
    d = [(g - c) / r for g, c, r in zip(grid, centre, radii)]
    rho = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    if wobble is not None:
        rho = rho / wobble
    return rho


def _angles(grid: tuple[np.ndarray, ...], centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y, z = (g - c for g, c in zip(grid, centre))
    theta = np.arctan2(y, x)
    phi = np.arctan2(z, np.sqrt(x ** 2 + y ** 2) + 1e-6)
    return theta.astype(np.float32), phi.astype(np.float32)


def make_phantom(seed: int, shape: tuple[int, int, int] = BRATS_SHAPE, with_skull: bool = False,
                 case_id: str | None = None) -> Phantom:
    """Build one phantom deterministically from ``seed`` (all randomness flows from it)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    size = np.array(shape, dtype=np.float32)
    grid = tuple(a.astype(np.float32) for a in np.meshgrid(*[np.arange(s) for s in shape], indexing="ij",
                                                           sparse=True))
    centre = size / 2.0 + rng.uniform(-0.02, 0.02, 3) * size

    # Brain: a wobbly ellipsoid; white matter inside, grey matter as a cortical shell.
    brain_radii = size * np.array([0.36, 0.42, 0.40]) * rng.uniform(0.93, 1.03, 3)
    theta, phi = _angles(grid, centre)
    brain_rho = _ellipsoid_distance(grid, centre, brain_radii, _wobbly_radius(rng, theta, phi, 0.04))
    brain = brain_rho < 1.0
    wm_rho = _ellipsoid_distance(grid, centre, brain_radii * 0.78, _wobbly_radius(rng, theta, phi, 0.08, 6))
    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[brain] = TISSUES.index("gm")
    tissue[brain & (wm_rho < 1.0)] = TISSUES.index("wm")
    # Two lateral ventricles (CSF).
    for side in (-1, 1):
        vc = centre + np.array([side * 0.06, -0.02, 0.03]) * size
        vr = size * np.array([0.035, 0.12, 0.05]) * rng.uniform(0.8, 1.2, 3)
        tissue[_ellipsoid_distance(grid, vc, vr) < 1.0] = TISSUES.index("csf")

    # Tumour: centre inside the brain away from the edge; oedema > enhancing rim > necrotic core.
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    t_centre = centre + direction * brain_radii * rng.uniform(0.1, 0.45)
    scale = min(shape) / min(BRATS_SHAPE)
    r_tumour = rng.uniform(9.0, 20.0) * scale           # outer radius of the enhancing rim
    r_core = r_tumour * rng.uniform(0.35, 0.65)          # necrotic core
    r_oedema = r_tumour * rng.uniform(1.5, 2.3)
    t_theta, t_phi = _angles(grid, t_centre)
    core_w = _wobbly_radius(rng, t_theta, t_phi, 0.15)
    oed_w = _wobbly_radius(rng, t_theta, t_phi, 0.25, 6)
    stretch = rng.uniform(0.8, 1.25, 3)
    rim_rho = _ellipsoid_distance(grid, t_centre, r_tumour * stretch, core_w)
    core_rho = _ellipsoid_distance(grid, t_centre, r_core * stretch, core_w)
    oed_rho = _ellipsoid_distance(grid, t_centre, r_oedema * stretch, oed_w)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(oed_rho < 1.0) & brain] = 2
    labels[(rim_rho < 1.0) & brain] = 4
    labels[(core_rho < 1.0) & brain] = 1
    tissue[labels == 2] = TISSUES.index("oedema")
    tissue[labels == 4] = TISSUES.index("enhancing")
    tissue[labels == 1] = TISSUES.index("necrosis")

    head = brain.copy()
    if with_skull:
        # Skull (dark) then scalp (bright) as two shells around the brain.
        head_rho = _ellipsoid_distance(grid, centre, brain_radii * 1.16)
        skull_rho = _ellipsoid_distance(grid, centre, brain_radii * 1.09)
        shell = head_rho < 1.0
        tissue[shell & ~brain] = TISSUES.index("scalp")
        tissue[(skull_rho < 1.0) & ~brain] = TISSUES.index("skull")
        head = shell

    # Smooth multiplicative bias field, shared by the modalities up to a small change.
    coords = [(g - c) / s for g, c, s in zip(grid, centre, size)]
    images = {}
    for mod in MODALITIES:
        lut = np.asarray(CONTRAST[mod], dtype=np.float32) * rng.uniform(0.9, 1.1)
        img = lut[tissue]
        coef = rng.uniform(-0.35, 0.35, 3)
        bias = 1.0 + coef[0] * coords[0] + coef[1] * coords[1] + coef[2] * coords[2] ** 2
        img = img * bias.astype(np.float32)
        noise = rng.normal(0.0, 0.04 * float(lut.max()), size=shape).astype(np.float32)
        img = np.where(head, np.clip(img + noise, 1.0, None), 0.0).astype(np.float32)
        images[mod] = np.round(img)
    cid = case_id or f"phantom{seed:03d}"
    return Phantom(cid, images, labels, brats_affine())


def write_phantom(ph: Phantom, out: Path) -> Path:
    """Write a phantom in BraTS layout: ``out/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii.gz``."""
    import nibabel as nib

    from .model_card import PHANTOM_MARKER

    folder = Path(out) / ph.case_id
    header = nib.Nifti1Header()
    header["descrip"] = PHANTOM_MARKER.encode()  # so a model card can tell synthetic training data apart
    for mod, img in ph.images.items():
        write_image(folder / image_name(ph.case_id, mod), img.astype(np.int16), ph.affine, header=header)
    write_image(folder / seg_name(ph.case_id), ph.labels, ph.affine, header=header, dtype=np.uint8)
    return folder


def write_phantoms(out: Path, n: int = 4, seed: int = 0, shape: tuple[int, int, int] = BRATS_SHAPE,
                   with_skull: bool = False, prefix: str = "phantom", digits: int = 3,
                   keep_existing: bool = False) -> list[Path]:
    """Write ``n`` phantoms with seeds seed..seed+n-1 (ids ``prefix`` + zero-padded seed); returns their folders.

    ``keep_existing`` leaves a case whose segmentation (written last) is already there, so an
    interrupted run picks up where it stopped.
    """
    folders = []
    for s in range(seed, seed + n):
        cid = f"{prefix}{s:0{digits}d}"
        folder = Path(out) / cid
        if not (keep_existing and (folder / seg_name(cid)).exists()):
            write_phantom(make_phantom(s, shape, with_skull, case_id=cid), Path(out))
            log.info("wrote %s", folder)
        folders.append(folder)
    return folders
