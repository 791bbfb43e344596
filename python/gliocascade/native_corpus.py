"""A deterministic corpus of native MRI exams with known truth, for testing and calibrating preprocessing.

Real exams come in many poses, grids and storage orders, and nothing says where their truth is.
This module makes exams whose truth is known by construction: each modality of a source case
(already in BraTS space, or a raw exam) is moved by its own rigid pose and resampled (linear) onto
a realistic native grid, then given a smooth multiplicative bias field and Rician noise.

Conventions (all points are ITK/LPS physical points, in mm):

- A modality's *pose* is the head's rigid motion from the source's space into the scanner world
  of that modality: ``x_native = R (x_source - c) + c + t``, with ``R`` the ITK ``Euler3DTransform``
  rotation of the pose's three angles (ITK's default order, ``R = Rz Rx Ry``), ``c`` the centroid of
  the source T1Gd's foreground (the head centre) and ``t`` the shift. So the shift is how far the
  head centre moves, and the rotation is about the head centre.
- ``CorpusExam.native_to_source[m]`` is the inverse of the pose: it maps a point of modality m's
  native space to the source's space, which is exactly the transform given to ``sitk.Resample``
  to generate the image (output grid = native, input = source).
- Composition ``a ∘ b`` means "apply b, then a" (``sitk.CompositeTransform([a, b])``).
- The native grid follows the head, as a technologist places the field of view: its centre is the
  posed head centre plus a small seeded offset. The pose shifts the head in world coordinates.

Sources: the two BraTS-space cases (skull-stripped; their four modalities share one grid and are
co-registered by construction) and the raw TCGA-FG-6692 exam, the only source with skull. The raw
exam's modalities are on four different native grids; for it, the "source space" of each modality
is its own physical space, which is fine because poses act on world coordinates. Its co-registration
truth, however, is only exact relative to how its modalities were aligned in the scanner (patient
motion between sequences is unknown), so ``CorpusExam.coreg_exact`` is False for it and
``coreg_truth`` must be asked for "relative to source alignment".

Hardness is guaranteed by construction, not by luck: in every block of 12 consecutive seeds
(so in the calibration seeds 0-11 and in the held-out seeds 12-23) the T1Gd gets a rotation of
20-25 degrees in 4 exams, a shift of 30-40 mm in 4, a 5-6 mm slice grid in 4, and each of the four
storage orders in 3; everything else is drawn at random within the bounds (total rotation angle
<= 25 degrees about a random axis, shift <= 40 mm in a random direction) for every modality.

Skull-stripped sources keep an exactly zero background, as distributed stripped datasets do: bias
and noise are applied only where the resampled source is non-zero. Sources with skull get noise
everywhere (including the air), as a scanner gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from .io import MODALITIES
from .layout import image_name
from .sitk_arrays import from_itk_array, itk_array

STORAGE_ORDERS = ("LAS", "LPS", "RAS", "PSR")
MAX_ROTATION_DEG = 25.0
MAX_SHIFT_MM = 40.0
HARD_ROTATION_DEG = 20.0
HARD_SHIFT_MM = 30.0
MAX_FOV_OFFSET_MM = 5.0
BLOCK = 12  # hardness is assigned by seed % BLOCK, so every 12 consecutive seeds carry it
HARD_ROTATION_SLOTS = (0, 3, 6, 9)
HARD_SHIFT_SLOTS = (0, 4, 7, 9)
THICK_SLICE_SLOTS = (0, 2, 6, 10)
TILT_RANGE_DEG = (10.0, 20.0)
BIAS_RADIUS_MM = 100.0

# Unit vectors (LPS world) of the nibabel-style axis codes.
_CODE_VECTORS = {"L": (1.0, 0.0, 0.0), "R": (-1.0, 0.0, 0.0), "P": (0.0, 1.0, 0.0),
                 "A": (0.0, -1.0, 0.0), "S": (0.0, 0.0, 1.0), "I": (0.0, 0.0, -1.0)}
_PLANE_NORMAL = {"axial": "SI", "coronal": "AP", "sagittal": "LR"}

# Native grid kinds: (plane, in-plane matrix, in-plane spacing, slice spacing, slices, volumetric).
# In-plane fields of view are about 240 mm; 2D slabs cover about 200 mm so that a head tilted by the
# largest pose stays inside, and the slice count follows the thickness.
GRID_KINDS: dict[str, tuple[str, int, float, float, int, bool]] = {
    "axial_512_5mm": ("axial", 512, 0.47, 5.0, 40, False),
    "axial_512_2.5mm": ("axial", 512, 0.47, 2.5, 80, False),
    "axial_256_2.5mm": ("axial", 256, 0.94, 2.5, 80, False),
    "sagittal_3d_1mm": ("sagittal", 256, 1.0, 1.0, 192, True),
    "axial_256_5.5mm": ("axial", 256, 0.9, 5.5, 37, False),
    "coronal_448_4mm": ("coronal", 448, 0.54, 4.0, 56, False),
    "oblique_320_3mm": ("oblique axial", 320, 0.75, 3.0, 67, False),
}
THICK_KINDS = ("axial_512_5mm", "axial_256_5.5mm")

SOURCE_NAMES = ("brats_space/TCGA-FG-6692", "brats_space/BraTS-GLI-00001-000", "native/TCGA-FG-6692")
# File name of each modality, per source folder (relative to the data folder).
SOURCE_FILES: dict[str, dict[str, str]] = {
    "brats_space/TCGA-FG-6692": {m: image_name("TCGA-FG-6692", m) for m in MODALITIES},
    "brats_space/BraTS-GLI-00001-000": {m: image_name("BraTS-GLI-00001-000", m, "2023") for m in MODALITIES},
    "native/TCGA-FG-6692": {"t1": "TCGA-FG-6692_t1.nii.gz", "t1ce": "TCGA-FG-6692_t1c.nii.gz",
                            "t2": "TCGA-FG-6692_t2.nii.gz", "flair": "TCGA-FG-6692_flair.nii.gz"},
}
SOURCE_SKULL_STRIPPED = {"brats_space/TCGA-FG-6692": True, "brats_space/BraTS-GLI-00001-000": True,
                         "native/TCGA-FG-6692": False}


# --------------------------------------------------------------------------------------------
# Grids

def order_direction(order: str) -> np.ndarray:
    """The 3x3 direction matrix (LPS world, columns = voxel axes) of a storage order such as "PSR"."""
    order = order.upper()
    world_axes = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
    if len(order) != 3 or not set(order) <= set(world_axes) or len({world_axes[c] for c in order}) != 3:
        raise ValueError(f"not a storage order: {order!r}")
    return np.array([_CODE_VECTORS[c] for c in order]).T


def _tilt_lr(deg: float) -> np.ndarray:
    """Rotation about the world left-right axis (the usual AC-PC angulation of an oblique slab)."""
    a = math.radians(deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), -math.sin(a)], [0.0, math.sin(a), math.cos(a)]])


@dataclass(frozen=True)
class GridSpec:
    """A native voxel grid without its origin (the origin follows the head when an exam is made).

    ``size`` and ``spacing`` are per voxel axis (ITK order); ``direction`` is the row-major 3x3 ITK
    direction (LPS world, column j = voxel axis j); ``order`` the storage order (nearest axis codes,
    nibabel convention); ``slice_axis`` the voxel axis across slices, None for a 3D acquisition.
    """

    name: str
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]
    order: str
    plane: str
    slice_axis: int | None
    tilt_deg: float = 0.0

    @property
    def slice_thickness(self) -> float:
        """The spacing across slices (the largest spacing for a 3D grid)."""
        return float(self.spacing[self.slice_axis] if self.slice_axis is not None else max(self.spacing))

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """The field of view along each voxel axis."""
        return tuple(float(n * s) for n, s in zip(self.size, self.spacing))  # type: ignore[return-value]

    def coarsened(self, factor: float) -> GridSpec:
        """The same field of view with ``factor`` times fewer voxels in plane (all axes for a 3D grid),
        so tests can use small exams with the real world extent and slice thickness."""
        if factor == 1.0:
            return self
        if factor < 1.0:
            raise ValueError(f"coarsen factor must be >= 1, got {factor}")
        size, spacing = list(self.size), list(self.spacing)
        for ax in range(3):
            if ax == self.slice_axis:
                continue
            n = max(1, int(round(self.size[ax] / factor)))
            spacing[ax] = self.size[ax] * self.spacing[ax] / n
            size[ax] = n
        return replace(self, name=f"{self.name} coarsened x{factor:g}", size=tuple(size),
                       spacing=tuple(spacing))


def native_grid(kind: str, order: str, tilt_deg: float = 15.0) -> GridSpec:
    """One grid of the catalogue (``GRID_KINDS``) in one storage order; ``tilt_deg`` only matters for
    the oblique kind. The slices lie across whichever voxel axis points along the plane's normal, so
    any plane can be stored in any order (as after a reorientation by a converter)."""
    plane, n, sp, thick, slices, volumetric = GRID_KINDS[kind]
    direction = order_direction(order)
    normal = _PLANE_NORMAL[plane.split()[-1]]
    slice_axis = next(ax for ax, c in enumerate(order.upper()) if c in normal)
    size = [n, n, n]
    spacing = [sp, sp, sp]
    size[slice_axis], spacing[slice_axis] = slices, thick
    tilt = float(tilt_deg) if plane.startswith("oblique") else 0.0
    if tilt:
        direction = _tilt_lr(tilt) @ direction
    if volumetric:
        name = f"{plane} 3D {slices}x{n}x{n} {sp:g}x{sp:g}x{thick:g} mm {order.upper()}"
    else:
        prefix = f"{plane} {tilt:.1f} deg" if tilt else plane
        name = f"{prefix} {n}x{n} {sp:g}x{sp:g}x{thick:g} mm {order.upper()}"
    return GridSpec(name=name, size=tuple(size), spacing=tuple(float(s) for s in spacing),
                    direction=tuple(float(v) for v in direction.flatten()), order=order.upper(),
                    plane=plane, slice_axis=None if volumetric else slice_axis, tilt_deg=tilt)


def grid_catalogue() -> list[GridSpec]:
    """Every grid kind in every storage order (oblique at its default tilt)."""
    return [native_grid(k, o) for k in GRID_KINDS for o in STORAGE_ORDERS]


# --------------------------------------------------------------------------------------------
# Exam specifications

@dataclass(frozen=True)
class Pose:
    """A rigid pose: Euler angles (degrees; ITK Euler3D order) and shift of the head centre (mm)."""

    angles_deg: tuple[float, float, float]
    shift_mm: tuple[float, float, float]

    @property
    def rotation_deg(self) -> float:
        """The total rotation angle (about the rotation's own axis)."""
        t = sitk.Euler3DTransform()
        t.SetRotation(*(math.radians(a) for a in self.angles_deg))
        m = np.array(t.GetMatrix()).reshape(3, 3)
        return math.degrees(math.acos(float(np.clip((np.trace(m) - 1.0) / 2.0, -1.0, 1.0))))

    @property
    def shift_norm_mm(self) -> float:
        """How far the head centre moves."""
        return float(np.linalg.norm(self.shift_mm))


@dataclass(frozen=True)
class ExamSpec:
    """Everything random about one corpus exam, drawn from its seed (``exam_spec``)."""

    seed: int
    source: str
    poses: dict[str, Pose]
    grids: dict[str, GridSpec]
    fov_offset_mm: dict[str, tuple[float, float, float]]
    noise: float  # Rician sigma as a fraction of the source foreground's median
    bias: float  # bias field amplitude (the field spans 1 -/+ bias over the head)

    @property
    def exam_id(self) -> str:
        """The case id of the exam's files, e.g. corpus007."""
        return f"corpus{self.seed:03d}"


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _axis_angle_pose(rng: np.random.Generator, angle_deg: float, shift_mm: float) -> Pose:
    """A pose of exactly ``angle_deg`` about a random axis and ``shift_mm`` in a random direction."""
    axis, a = _random_unit(rng), math.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    matrix = np.eye(3) + math.sin(a) * k + (1.0 - math.cos(a)) * (k @ k)
    euler = sitk.Euler3DTransform()
    euler.SetMatrix(tuple(float(v) for v in matrix.flatten()))
    angles = tuple(round(math.degrees(x), 6) for x in (euler.GetAngleX(), euler.GetAngleY(), euler.GetAngleZ()))
    shift = tuple(round(float(s), 6) for s in _random_unit(rng) * shift_mm)
    return Pose(angles, shift)  # type: ignore[arg-type]


def _random_grid(rng: np.random.Generator, kinds: Sequence[str], order: str | None = None) -> GridSpec:
    kind = kinds[int(rng.integers(len(kinds)))]
    order = order or STORAGE_ORDERS[int(rng.integers(len(STORAGE_ORDERS)))]
    return native_grid(kind, order, tilt_deg=round(float(rng.uniform(*TILT_RANGE_DEG)), 1))


def exam_spec(seed: int, source: str) -> ExamSpec:
    """The exam of ``seed`` (deterministic: numpy ``default_rng(seed)``); the hard properties of the
    T1Gd are assigned by ``seed % 12`` (see the module docstring), the rest is random."""
    rng = np.random.default_rng(seed)
    slot = seed % BLOCK
    poses, grids, offsets = {}, {}, {}
    for mod in MODALITIES:
        hard = mod == "t1ce"
        angle = rng.uniform(HARD_ROTATION_DEG + 0.01, MAX_ROTATION_DEG) if hard and slot in HARD_ROTATION_SLOTS \
            else rng.uniform(0.0, MAX_ROTATION_DEG)
        shift = rng.uniform(HARD_SHIFT_MM + 0.01, MAX_SHIFT_MM) if hard and slot in HARD_SHIFT_SLOTS \
            else rng.uniform(0.0, MAX_SHIFT_MM)
        poses[mod] = _axis_angle_pose(rng, float(angle), float(shift))
        if hard:
            kinds = THICK_KINDS if slot in THICK_SLICE_SLOTS else tuple(GRID_KINDS)
            grids[mod] = _random_grid(rng, kinds, STORAGE_ORDERS[slot % len(STORAGE_ORDERS)])
        else:
            grids[mod] = _random_grid(rng, tuple(GRID_KINDS))
        offsets[mod] = tuple(round(float(v), 6) for v in rng.uniform(-MAX_FOV_OFFSET_MM, MAX_FOV_OFFSET_MM, 3))
    return ExamSpec(seed=int(seed), source=source, poses=poses, grids=grids, fov_offset_mm=offsets,
                    noise=round(float(rng.uniform(0.02, 0.05)), 6), bias=round(float(rng.uniform(0.15, 0.20)), 6))


def corpus_specs(seeds: Iterable[int], sources: Sequence[str]) -> list[ExamSpec]:
    """The exams of ``seeds``, with sources assigned round-robin in the order of ``seeds``."""
    if not sources:
        raise ValueError("corpus_specs needs at least one source")
    return [exam_spec(s, sources[i % len(sources)]) for i, s in enumerate(seeds)]


def pose_table(specs: Iterable[ExamSpec]) -> list[dict]:
    """A JSON-friendly record of every exam's poses and grids (for the registration QC results)."""
    rows = []
    for spec in specs:
        mods = {}
        for mod in MODALITIES:
            pose, grid = spec.poses[mod], spec.grids[mod]
            mods[mod] = {"angles_deg": [round(a, 3) for a in pose.angles_deg],
                         "rotation_deg": round(pose.rotation_deg, 3),
                         "shift_mm": [round(s, 3) for s in pose.shift_mm],
                         "shift_norm_mm": round(pose.shift_norm_mm, 3),
                         "grid": grid.name, "storage_order": grid.order,
                         "slice_thickness_mm": round(grid.slice_thickness, 3)}
        rows.append({"exam_id": spec.exam_id, "seed": spec.seed, "source": spec.source,
                     "noise": spec.noise, "bias": spec.bias, "modalities": mods})
    return rows


# --------------------------------------------------------------------------------------------
# Sources

def load_source(data_dir: str | Path, name: str) -> tuple[dict[str, sitk.Image], bool]:
    """One source case (``SOURCE_NAMES``) as float32 images per modality, and whether it is stripped."""
    folder = Path(data_dir) / name
    images = {m: sitk.Cast(sitk.ReadImage(str(folder / f)), sitk.sitkFloat32)
              for m, f in SOURCE_FILES[name].items()}
    return images, SOURCE_SKULL_STRIPPED[name]


def load_sources(data_dir: str | Path) -> dict[str, tuple[dict[str, sitk.Image], bool]]:
    """All corpus sources: the two skull-stripped BraTS-space cases and the raw exam with skull."""
    return {name: load_source(data_dir, name) for name in SOURCE_NAMES}


def foreground(image: sitk.Image, skull_stripped: bool) -> np.ndarray:
    """The head (ITK array order): non-zero voxels of a stripped image, else voxels above a tenth of
    the 99th percentile (air in a raw exam is noise, far below that)."""
    arr = itk_array(image, copy=False)
    if skull_stripped:
        return arr != 0
    return arr > 0.1 * float(np.percentile(arr, 99))


def head_centre(image: sitk.Image, skull_stripped: bool) -> tuple[float, float, float]:
    """The physical centroid of the foreground: the centre of every pose's rotation."""
    idx = np.argwhere(foreground(image, skull_stripped))
    if idx.size == 0:
        raise ValueError("source image has no foreground")
    return image.TransformContinuousIndexToPhysicalPoint([float(v) for v in idx.mean(0)[::-1]])


def _grids_equal(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


# --------------------------------------------------------------------------------------------
# Exams and their truth

@dataclass
class CorpusExam:
    """One written exam with its truth as SimpleITK transforms (see the module's conventions)."""

    spec: ExamSpec
    paths: dict[str, Path]
    grids: dict[str, GridSpec]
    native_to_source: dict[str, sitk.Transform]
    centre: tuple[float, float, float]
    skull_stripped: bool
    coreg_exact: bool
    origins: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def exam_id(self) -> str:
        return self.spec.exam_id

    def source_to_native(self, mod: str) -> sitk.Transform:
        """Modality ``mod``'s pose: source points -> its native points."""
        return self.native_to_source[mod].GetInverse()

    def coreg_truth(self, mod: str, relative_to_source_alignment: bool = False) -> sitk.Transform:
        """What a registration with fixed = native T1Gd, moving = native ``mod`` must find (fixed ->
        moving point map): ``source_to_native[mod] ∘ native_to_source[t1ce]``.

        For a source whose modalities are not co-registered by construction (the raw exam) this is
        only exact relative to the source's own alignment; ask for it explicitly then."""
        if not self.coreg_exact and not relative_to_source_alignment:
            raise ValueError(f"{self.exam_id}: source {self.spec.source} is not co-registered by construction; "
                             "its co-registration truth is only relative to the source alignment "
                             "(pass relative_to_source_alignment=True)")
        return sitk.CompositeTransform([self.source_to_native(mod), self.native_to_source["t1ce"]])

    def atlas_truth(self, r0: sitk.Transform) -> sitk.Transform:
        """BraTS points -> native T1Gd points, given ``r0`` (BraTS points -> source T1Gd points, what
        preprocessing finds for the unposed source): ``source_to_native[t1ce] ∘ r0``."""
        return sitk.CompositeTransform([self.source_to_native("t1ce"), r0])


def pose_transform(pose: Pose, centre: Sequence[float]) -> sitk.Euler3DTransform:
    """The pose as a transform source -> native: ``x -> R (x - c) + c + t``."""
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in centre))
    t.SetRotation(*(math.radians(a) for a in pose.angles_deg))
    t.SetTranslation(tuple(float(s) for s in pose.shift_mm))
    return t


def _grid_origin(grid: GridSpec, centre: np.ndarray) -> tuple[float, float, float]:
    d = np.array(grid.direction).reshape(3, 3)
    half = (np.array(grid.size) - 1) / 2.0 * np.array(grid.spacing)
    return tuple(float(v) for v in centre - d @ half)  # type: ignore[return-value]


def _bias_field(shape_zyx: tuple[int, ...], grid: GridSpec, origin: Sequence[float], centre: np.ndarray,
                amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field 1 + a f(x), f a random quadratic polynomial of the native world
    point (relative to the head centre, in units of 100 mm) scaled so |f| <= 1 over the head's ball."""
    coef = rng.normal(size=9)
    lat = np.linspace(-1.0, 1.0, 15)
    u = np.stack(np.meshgrid(lat, lat, lat, indexing="ij"), -1).reshape(-1, 3)
    u = u[np.linalg.norm(u, axis=1) <= 1.0]

    def poly(x, y, z):
        terms = (x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
        return sum(c * t for c, t in zip(coef, terms))

    scale = float(np.abs(poly(u[:, 0], u[:, 1], u[:, 2])).max())
    d = np.array(grid.direction).reshape(3, 3) * np.array(grid.spacing)
    base = (np.asarray(origin) - centre) / BIAS_RADIUS_MM
    step = d / BIAS_RADIUS_MM
    nz, ny, nx = shape_zyx
    ii, jj = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="xy")
    out = np.empty(shape_zyx, dtype=np.float32)
    for k in range(nz):
        p = [(base[a] + step[a, 2] * k) + step[a, 0] * ii + step[a, 1] * jj for a in range(3)]
        out[k] = np.clip(1.0 + amplitude * poly(*p) / scale, 0.5, 1.5)
    return out


def _modality_rng(seed: int, mod: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), 1 + MODALITIES.index(mod)])


def make_exam(spec: ExamSpec, source_images: dict[str, sitk.Image], out_dir: str | Path,
              coarsen: float = 1.0, *, skull_stripped: bool) -> CorpusExam:
    """Write ``<id>_{t1,t1ce,t2,flair}.nii.gz`` under ``out_dir`` and return the exam with its truth.

    Each modality is its source image resampled (linear) through the inverse of its pose onto its
    native grid, times a smooth bias field, plus Rician noise ``sqrt((s + n1)^2 + n2^2)`` with sigma
    ``spec.noise`` times the source foreground's median (own seeded generator per modality). For a
    skull-stripped source, bias and noise apply only where the resampled source is non-zero, so the
    background stays exactly zero. ``coarsen`` shrinks the in-plane matrix (same field of view)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    centre = np.array(head_centre(source_images["t1ce"], skull_stripped))
    ref = source_images["t1ce"]
    coreg_exact = all(_grids_equal(ref, source_images[m]) for m in MODALITIES)
    paths, grids, n2s, origins = {}, {}, {}, {}
    for mod in MODALITIES:
        src = source_images[mod]
        grid = spec.grids[mod].coarsened(coarsen)
        s2n = pose_transform(spec.poses[mod], centre)
        posed_centre = np.array(s2n.TransformPoint(tuple(centre)))
        origin = _grid_origin(grid, posed_centre + np.array(spec.fov_offset_mm[mod]))
        to_source = s2n.GetInverse()
        img = sitk.Resample(src, [int(s) for s in grid.size], to_source, sitk.sitkLinear, origin,
                            grid.spacing, grid.direction, 0.0, sitk.sitkFloat32)
        arr = itk_array(img)
        rng = _modality_rng(spec.seed, mod)
        inside = arr != 0
        if spec.bias:
            arr = arr * _bias_field(arr.shape, grid, origin, posed_centre, spec.bias, rng)
        if spec.noise:
            src_arr = itk_array(src, copy=False)
            sigma = spec.noise * float(np.median(src_arr[foreground(src, skull_stripped)]))
            n1 = rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
            n2 = rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
            arr = np.sqrt((arr + n1) ** 2 + n2 ** 2)
        if skull_stripped:
            arr = np.where(inside, arr, np.float32(0.0))
        out = from_itk_array(arr.astype(np.float32, copy=False), img)
        path = out_dir / image_name(spec.exam_id, mod)
        sitk.WriteImage(out, str(path), True)
        paths[mod], grids[mod], n2s[mod], origins[mod] = path, grid, to_source, origin
    return CorpusExam(spec=spec, paths=paths, grids=grids, native_to_source=n2s,
                      centre=tuple(float(c) for c in centre), skull_stripped=skull_stripped,
                      coreg_exact=coreg_exact, origins=origins)


# --------------------------------------------------------------------------------------------
# Measuring registrations against the truth

def physical_points(mask: sitk.Image) -> np.ndarray:
    """The LPS physical points (N, 3) of a mask's non-zero voxels."""
    idx = np.argwhere(itk_array(mask, copy=False) != 0)[:, ::-1].astype(np.float64)
    d = np.array(mask.GetDirection()).reshape(3, 3) * np.array(mask.GetSpacing())
    return np.asarray(mask.GetOrigin()) + idx @ d.T


def target_registration_error(found: sitk.Transform, truth: sitk.Transform, mask_points_lps: np.ndarray,
                              max_points: int = 4000) -> tuple[float, float]:
    """Mean and max distance (mm) between ``found(p)`` and ``truth(p)`` over mask points, evenly
    subsampled (deterministically) to at most ``max_points``."""
    pts = np.asarray(mask_points_lps, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        raise ValueError("target_registration_error needs at least one point")
    if len(pts) > max_points:
        pts = pts[np.unique(np.linspace(0, len(pts) - 1, max_points).round().astype(int))]
    dist = [np.linalg.norm(np.subtract(found.TransformPoint(tuple(p)), truth.TransformPoint(tuple(p))))
            for p in pts.tolist()]
    return float(np.mean(dist)), float(np.max(dist))
