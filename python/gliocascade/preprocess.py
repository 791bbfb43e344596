"""One exam from native scanner space to a BraTS-like case (the `preprocess` step).

Order, as in the BraTS reference pipelines: co-register T1, T2 and FLAIR to T1Gd (rigid, Mattes
MI); register T1Gd to the SRI24 atlas T1 (rigid, optionally affine; ``atlas_via="t1"`` goes through
the co-registered T1 instead); resample each modality once
onto the BraTS grid through the composed transforms (linear, intensities kept); skull-strip there;
write the images, the brain mask, the BraTS -> native transform with a reference of the native
T1Gd grid (for native-space segmentations), and a provenance record. Every registration is checked
by a similarity measure, so mismatched modalities or a failed registration stop the case with an
error instead of producing a plausible-looking but wrong volume. Nothing is written before all
checks pass, and outputs appear by rename only. The checks are recorded as the provenance QC
block (DESIGN's shared records); ``allow_qc_failure`` writes a failing case anyway, its decision
``overridden`` with the reasons, so that a person who has looked at it can keep it and the report
flags it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from . import registration as reg
from . import skull_presence
from .atlas import atlas_release, locate_atlas
from .errors import InputError
from .geometry import BRATS_ORIGIN_LPS, BRATS_SHAPE, BRATS_SPACING_MM, bounding_box, brats_affine
from .io import MODALITIES, check_distinct_files, check_writable_folder, write_image, write_labels
from .hashing import sha256_file
from .layout import NATIVE_REFERENCE_NAME, TRANSFORM_NAME, TRANSFORMS_DIR, brainmask_name, image_name, provenance_name
from .provenance import write_provenance
from .resample import as_affine, compose, field_of_view, resample, to_brats
from .sitk_arrays import from_itk_array, itk_array
from .skullstrip import METHODS, check_plausible, filled_largest_component, plugin_mask, refine_atlas_mask

log = logging.getLogger(__name__)

ANCHOR = "t1ce"  # every other modality is registered onto the T1Gd
MOVING = ("t1", "t2", "flair")
ATLAS_ROUTES = ("t1", "t1ce")  # which image drives the registration to the atlas T1
# Edge correlation inside the brain below which a registered image is taken not to show the same
# head. Measured on the real exam (README): same subject 0.58-0.68, another subject's image 0.18-0.25;
# the subject against the atlas T1 (another head by nature) 0.20.
MIN_EDGE_CORR_COREG = 0.40
MIN_EDGE_CORR_ATLAS = 0.10
# A modality whose voxels are mirrored left-right under an unchanged header (a wrong conversion)
# still co-registers to a high edge correlation, as a head is nearly symmetric; no rigid motion
# undoes a mirror, though, so the same image flipped back and registered again matches better.
# The check's score is the edge correlation as given minus the flipped one's: a correct modality
# scores above 0, a mirrored one below (README, preprocessing: the measured margins). It always
# runs the SimpleITK registration, from a start computed from the first registration.
MIN_MIRROR_MARGIN = 0.0
# A registration that ended degrees or millimetres off still scores a fair edge correlation, so the
# score alone cannot tell it from a correct one; but one small rigid step (3 degrees, 3 mm) away
# from a wrong result improves the score, and from a correct one it does not. The check's score
# is the result's edge correlation minus its best neighbour's (``optimality_gain`` negated); on the
# corpus (benchmarks/registration_qc.py) correct results scored -0.011 or more and results broken by
# 8 degrees or 8 mm or more that pass the similarity check -0.031 or less on seeds 0-11: the threshold
# is their midpoint; on the held-out seeds 12-23 the closest break scored -0.022 and was caught. The
# real exam scores +0.02 to +0.07.
MIN_OPTIMUM_MARGIN = -0.021
# Skull-stripped images of two different people, registered, share their brain outline, and the
# outline carries the whole-brain edge correlation: another subject's stripped T1 scored 0.52-0.53 on
# the corpus, above MIN_EDGE_CORR_COREG. Over the deep brain (``deep_brain``: 10 mm or more inside)
# only the subject's own anatomy lines up. Calibrated on the corpus (benchmarks/registration_qc.py,
# README): the check ``<modality>_deep_match`` runs for skull-stripped inputs, whose outline is shared.
MIN_EDGE_CORR_DEEP = 0.25
# Room around the atlas brain's box for the mask refinement's morphology (its rim band is 4 mm).
BRAIN_BOX_MARGIN_MM = 8
# A skull-stripped exam's atlas registration counts only atlas points within this distance of the
# atlas brain: the brain, its outline and the empty margin a stripped brain's outline moves in.
ATLAS_METRIC_MARGIN_MM = 8.0


# --------------------------------------------------------------------------- input

def read_input(path: str | Path, role: str) -> sitk.Image:
    """Read a 3D scalar image with its world geometry; refuse 2D/4D, NaN/Inf and all-zero images."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{role} image not found")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        raise InputError(path, f"{role} is not a readable image ({msg[-1] if msg else 'unknown error'})") from None
    size = img.GetSize()
    if img.GetDimension() == 4 and size[3] == 1:
        img = img[:, :, :, 0]
        size = img.GetSize()
    if img.GetDimension() > 3:
        raise InputError(path, f"{role} must be a 3D image, got {img.GetDimension()}D with size {size}")
    if img.GetDimension() < 3 or min(size) < 2:
        raise InputError(path, f"{role} must be a 3D image, got a 2D image of size {size}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"{role} must be a scalar image, got {img.GetNumberOfComponentsPerPixel()} components")
    img = sitk.Cast(img, sitk.sitkFloat32)
    arr = itk_array(img, copy=False)
    if not np.all(np.isfinite(arr)) or not _finite_on_disk(path):
        raise InputError(path, f"{role} contains NaN or infinite values")
    if not np.any(arr):
        raise InputError(path, f"{role} is all zero")
    return img


def _finite_on_disk(path: Path) -> bool:
    """ITK's NIfTI reader turns NaN into 0, so NIfTI values are checked as stored (nibabel)."""
    if not path.name.endswith((".nii", ".nii.gz")):
        return True
    try:
        data = np.asanyarray(nib.load(str(path)).dataobj)
    except Exception:  # unreadable by nibabel but read by ITK: ITK's values were checked
        return True
    return not np.issubdtype(data.dtype, np.floating) or bool(np.all(np.isfinite(data)))


# --------------------------------------------------------------------------- helpers

class StageClock:
    """CPU and wall seconds per stage (CPU time counts every thread of this process)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[stage] = round(self.cpu.get(stage, 0.0) + time.process_time() - c0, 3)
            self.wall[stage] = round(self.wall.get(stage, 0.0) + time.perf_counter() - w0, 3)


REGISTRATION_COPY = "bin-averaged (SimpleITK BinShrink)"  # what registration_copy makes (provenance)


def registration_copy(image: sitk.Image, min_spacing_mm: float = 1.5) -> sitk.Image:
    """Averaged copy for co-registration and its checks (same world extent, fewer voxels).

    Clinical exams have sub-millimetre pixels and 5 mm slices; halving the in-plane sampling
    changes co-registration by under a voxel of the BraTS grid and makes it about 3x cheaper.
    Every fine axis is shrunk, whichever storage axis it is: a corpus T1Gd stored with its slice
    axis second kept its 0.47 mm third axis before, and its co-registrations cost 2.5x the CPU time.
    Each copy voxel is the mean of the voxels it covers (``BinShrink``), not one of them: picking
    one kept all the noise of a 0.47 mm pixel and aliased, and co-registration on six stripped
    full-size corpus exams erred twice as much (median 0.83 mm against 0.43 mm, same CPU time).
    """
    factors = [max(1, int(round(min_spacing_mm / s))) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def n4_corrected(image: sitk.Image) -> sitk.Image:
    """N4 bias-field-corrected copy, used only to drive registration (as CaPTk does)."""
    small = sitk.Shrink(image, [4, 4, 1])
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetNumberOfThreads(reg.REGISTRATION_THREADS)
    n4.SetMaximumNumberOfIterations([25, 25, 25])
    n4.Execute(small, mask)
    log_field = n4.GetLogBiasFieldAsImage(image)
    return sitk.Cast(image / sitk.Exp(log_field), sitk.sitkFloat32)


def edge_map(image: sitk.Image) -> np.ndarray:
    """Gradient magnitude (Gaussian, 1.5 mm): edges that every MR contrast shares."""
    return itk_array(sitk.GradientMagnitudeRecursiveGaussian(image, 1.5))


def edge_correlation(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, region: np.ndarray,
                     fixed_edges: np.ndarray | None = None) -> float:
    """Correlation of the edge maps of ``fixed`` and of ``moving`` resampled onto it, over ``region``.

    Co-registered images of one head share their edges (ventricles, sulci, tumour, brain outline)
    whatever their contrasts; another subject's image, or a failed registration, does not.
    ``fixed_edges`` (``edge_map(fixed)``) saves recomputing them when one image is checked against several.
    """
    warped = resample(moving, fixed, transform)
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    overlap = itk_array(resample(ones, fixed, transform, sitk.sitkNearestNeighbor, sitk.sitkUInt8)) > 0
    with reg.fixed_threads():
        a = edge_map(fixed) if fixed_edges is None else fixed_edges
        b = edge_map(warped)
    return reg.normalized_cross_correlation(a, b, region & overlap)


def deep_brain(brain: np.ndarray, image: sitk.Image, depth_mm: float = 10.0) -> np.ndarray:
    """The part of ``brain`` (an array of ``image``'s grid) at least ``depth_mm`` from its outline.

    Registered skull-stripped images of two different people share their brain outline, which
    carries most of an edge correlation over the whole brain; deeper in, only the subject's own
    anatomy (ventricles, sulci, tumour) lines up. Distances are in millimetres of ``image``'s spacing.
    """
    from scipy import ndimage

    return ndimage.distance_transform_edt(brain, sampling=image.GetSpacing()[::-1]) >= depth_mm


def region_centre(image: sitk.Image, region: np.ndarray) -> tuple[float, float, float]:
    """The physical point at the centroid of ``region`` (an array of ``image``'s grid)."""
    idx = np.argwhere(region).mean(axis=0)[::-1]  # (z, y, x) -> (x, y, z)
    return image.TransformContinuousIndexToPhysicalPoint(tuple(float(i) for i in idx))


def _perturbations(centre: tuple[float, float, float], step_deg: float, step_mm: float) -> list[sitk.Transform]:
    """The twelve rigid steps of ``step_deg`` about and ``step_mm`` along each axis, either way."""
    steps = []
    for axis in np.eye(3):
        for sign in (1.0, -1.0):
            rot = sitk.VersorRigid3DTransform()
            rot.SetCenter(centre)
            rot.SetRotation(tuple(axis), float(np.deg2rad(sign * step_deg)))
            shift = sitk.TranslationTransform(3, tuple(float(x) for x in sign * step_mm * axis))
            steps += [rot, shift]
    return steps


def best_neighbour(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, region: np.ndarray,
                   fixed_edges: np.ndarray | None = None, step_deg: float = 3.0,
                   step_mm: float = 3.0) -> tuple[float, sitk.Transform]:
    """(gain, neighbour): the best of the twelve rigid steps of ``step_deg`` / ``step_mm`` away from
    ``transform`` by edge correlation, and how much better it scores than ``transform`` itself."""
    centre = region_centre(fixed, region)
    edges = fixed_edges
    if edges is None:
        with reg.fixed_threads():
            edges = edge_map(fixed)
    at = edge_correlation(fixed, moving, transform, region, edges)
    scored = [(edge_correlation(fixed, moving, moved, region, edges), i, moved)
              for i, moved in enumerate(sitk.CompositeTransform([transform, step])
                                        for step in _perturbations(centre, step_deg, step_mm))]
    best, _, neighbour = max(scored, key=lambda t: (t[0], -t[1]))  # ties: the first step, deterministically
    return round(best - at, 4), neighbour


def optimality_gain(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, region: np.ndarray,
                    fixed_edges: np.ndarray | None = None, step_deg: float = 3.0, step_mm: float = 3.0) -> float:
    """How much better the edge correlation gets one small rigid step away from ``transform``
    (the best of twelve steps, minus the score at ``transform``): about 0 or below at a correct
    registration, clearly above 0 when it lies degrees or millimetres off. A pure function of the
    images and the transform, so a result can be judged without knowing how it was found."""
    return best_neighbour(fixed, moving, transform, region, fixed_edges, step_deg, step_mm)[0]


def rigid_as_euler(transform: sitk.Transform, centre: tuple[float, float, float] | np.ndarray) -> sitk.Euler3DTransform:
    """One Euler3D transform about ``centre`` equal to a rigid ``transform`` (or a composite of rigid
    ones), as registration starts need."""
    return _euler_from_parts(*affine_parts(transform), centre)


def _euler_from_parts(matrix: np.ndarray, offset: np.ndarray, centre) -> sitk.Euler3DTransform:
    """x -> matrix x + offset as an Euler3D transform about ``centre`` (the nearest rotation where
    ``matrix`` carries an affine's scaling)."""
    u, _, vt = np.linalg.svd(matrix)
    out = sitk.Euler3DTransform()
    c = np.asarray(centre, float)
    out.SetCenter(tuple(c))
    out.SetMatrix(tuple((u @ vt).ravel()))
    out.SetTranslation(tuple(matrix @ c + offset - c))
    return out


def restart_off_optimum(fixed: sitk.Image, moving: sitk.Image, result: reg.RegistrationResult, region: np.ndarray,
                        params: reg.RegistrationParams,
                        fixed_edges: np.ndarray | None = None) -> tuple[reg.RegistrationResult, float]:
    """(kept result, its optimum margin): a co-registration whose margin (edge correlation minus its
    best 3-degree/3-mm neighbour's) is below ``MIN_OPTIMUM_MARGIN`` is run once more from that
    neighbour. Off-optimum results of correct images were poorer local optima of the registration's
    own metric (a corpus FLAIR: Mattes MI -0.578, 2.7 mm off; restarted -0.600, 1.1 mm), so the
    restart is kept when that metric prefers it, and the optimum check then judges what is kept.
    A restart that returns within 1 degree and 1 mm is the same optimum of that metric, whose last
    digits only sampling noise decides; it is kept when it scores the better margin (a corpus FLAIR
    with skull: MI -0.5999 at margin -0.031, restarted -0.5995 at -0.008)."""
    gain, neighbour = best_neighbour(fixed, moving, result.transform, region, fixed_edges)
    if -gain >= MIN_OPTIMUM_MARGIN:
        return result, -gain
    try:
        centre = sitk.Euler3DTransform(result.transform).GetCenter()
    except (RuntimeError, TypeError):
        centre = region_centre(fixed, region)
    again = reg.register_from(fixed, moving, rigid_as_euler(neighbour, centre), params)
    margin_after = -optimality_gain(fixed, moving, again.transform, region, fixed_edges)
    same_optimum = bool(reg.same_pose(again.transform, result.transform, 1.0, 1.0))
    record = {"margin_before": -gain, "metric_before": round(result.metric, 6), "metric_after": round(again.metric, 6),
              "margin_after": margin_after, "same_optimum": same_optimum,
              "kept": bool(again.metric < result.metric or (same_optimum and margin_after > -gain))}
    if not record["kept"]:
        return replace(result, extra={**result.extra, "restart": record}), -gain
    return replace(again, extra={**result.extra, "restart": record}), margin_after


# --------------------------------------------------------------------------- the case

def _brats_to_native(results: dict[str, reg.RegistrationResult], atlas_via: str) -> sitk.Transform:
    """BraTS (atlas) points -> native T1Gd points, directly or through the T1 and its co-registration."""
    found = results["atlas"]
    to_native = found.transform if found.extra["fixed_image"] == "atlas" else found.transform.GetInverse()
    if atlas_via == "t1ce":
        return to_native
    return as_affine(compose(results["t1"].transform.GetInverse(), to_native))


def register_to_atlas(native: sitk.Image, atlas_target: sitk.Image, atlas_brain: sitk.Image, stripped: bool,
                      backend: str, affine: bool, params: reg.RegistrationParams) -> reg.RegistrationResult:
    """The atlas registration; ``extra["fixed_image"]`` says which image was the fixed one.

    A skull-stripped exam is registered with the atlas as the fixed image and the metric masked
    to the atlas brain and a margin: every exam is then measured at the same atlas points whatever
    its grid, pose and field of view. On the generated corpus this cut the atlas step's CPU time
    about threefold at the same accuracy (README, "Atlas registration: which image is fixed"). An
    exam with skull keeps the native image as the fixed one, the whole head in the metric: masked
    to the brain, the real exam landed 3.3 mm from that head-to-head optimum, which is the one the
    BraTS Toolkit's images match (NCC T1 0.65 instead of 0.89)."""
    if stripped:
        found = reg.register(atlas_target, native, backend, affine=affine, params=params,
                             fixed_mask=atlas_metric_mask(atlas_brain))
    else:
        found = reg.register(native, atlas_target, backend, affine=affine, params=params)
    found.extra["fixed_image"] = "atlas" if stripped else "native"
    return found


def atlas_metric_mask(atlas_brain: sitk.Image, margin_mm: float = ATLAS_METRIC_MARGIN_MM) -> sitk.Image:
    """The atlas points the atlas registration's metric samples: the brain and ``margin_mm`` around it."""
    distance = sitk.SignedMaurerDistanceMap(atlas_brain > 0, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.Cast(distance <= margin_mm, sitk.sitkUInt8)


def preprocess_case(images: dict[str, Path], case_id: str, out: Path, atlas_dir: Path | None = None,
                    backend: str = "simpleitk", affine: bool = False, n4: bool = False,
                    skull_strip: str = "atlas", threads: int = 1,
                    params: reg.RegistrationParams | None = None, atlas_via: str = "t1ce",
                    allow_qc_failure: bool = False, input_skull_stripped: str = "auto") -> dict[str, Path]:
    """Preprocess one exam; returns the written paths by role (modalities, brainmask, transform, ...).

    ``atlas_via`` ``t1``: the native T1 is registered to the atlas and T1Gd follows through its
    T1 -> T1Gd co-registration; ``t1ce``: T1Gd is registered to the atlas directly.
    ``input_skull_stripped`` (auto, yes, no; ``skull_presence``): an exam already skull-stripped is
    registered to the skull-stripped atlas T1 and keeps its own brain (T1Gd's non-background region
    on the BraTS grid) instead of the atlas mask or a skull-stripper. A failed
    similarity check stops the case (InputError naming the case, the modality and the score) unless
    ``allow_qc_failure``: then it is written with QC decision ``overridden``.
    """
    started = time.time()
    clock = StageClock()
    out = Path(out)
    check_writable_folder(out)  # before registering for minutes, not after
    params = params or reg.RegistrationParams()
    if skull_strip not in METHODS:
        raise InputError(None, f"unknown skull-stripping method {skull_strip!r}")
    if atlas_via not in ATLAS_ROUTES:
        raise InputError(None, f"unknown atlas route {atlas_via!r} (choose from {ATLAS_ROUTES})")
    paths = {m: Path(images[m]) for m in MODALITIES}
    check_distinct_files(paths)  # one file twice co-registers perfectly with itself: refuse it first
    previous_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    if backend == "ants":
        reg.limit_ants_threads(reg.REGISTRATION_THREADS)
    try:
        with clock("read"):
            native = {m: read_input(paths[m], m) for m in MODALITIES}
            atlas = locate_atlas(Path(atlas_dir) if atlas_dir else None)
            atlas_t1 = read_input(atlas["t1"], "atlas T1")
            atlas_ss = read_input(atlas["t1_skullstripped"], "atlas skull-stripped T1")
            skull = skull_presence.decide(native, input_skull_stripped, case_id)
            log.info("%s: inputs %s (%s: %s)", case_id, "skull-stripped" if skull.stripped else "with skull",
                     skull.source, skull.reason)
            if skull.stripped and skull_strip != "atlas":
                log.warning("%s: the inputs are already skull-stripped: --skull-strip %s is not run", case_id,
                            skull_strip)
            atlas_target, atlas_name = (atlas_ss, "the skull-stripped atlas T1") if skull.stripped else \
                (atlas_t1, "the atlas T1")
        with clock("n4"):
            driving = {m: n4_corrected(native[m]) for m in MODALITIES} if n4 else native
        results: dict[str, reg.RegistrationResult] = {}
        small = {m: registration_copy(driving[m]) if backend == "simpleitk" else driving[m] for m in MODALITIES}
        for m in MOVING:
            with clock("coregister"):
                results[m] = reg.register(small["t1ce"], small[m], backend, params=params)
        with clock("atlas_registration"):
            results["atlas"] = register_to_atlas(driving[atlas_via], atlas_target, atlas_ss, skull.stripped, backend,
                                                 affine, params)
            brats_to_native = _brats_to_native(results, atlas_via)
            brain = itk_array(resample(atlas_ss, small["t1ce"], brats_to_native.GetInverse(),
                                       sitk.sitkNearestNeighbor)) > 0
        with clock("optimum_restart"):
            with reg.fixed_threads():
                t1ce_edges = edge_map(small["t1ce"])
            optimum_margin = {}
            for m in MOVING:  # a co-registration that ended off its optimum gets one restart
                if brain.sum() < 1000:  # no brain in the image: the similarity check below says so
                    break
                if backend == "simpleitk":
                    results[m], optimum_margin[m] = restart_off_optimum(small["t1ce"], small[m], results[m], brain,
                                                                        params, t1ce_edges)
                else:
                    optimum_margin[m] = -optimality_gain(small["t1ce"], small[m], results[m].transform, brain,
                                                         t1ce_edges)
            if atlas_via == "t1" and "restart" in results["t1"].extra:  # the chain runs through the T1
                brats_to_native = _brats_to_native(results, atlas_via)
                brain = itk_array(resample(atlas_ss, small["t1ce"], brats_to_native.GetInverse(),
                                           sitk.sitkNearestNeighbor)) > 0
            t1ce_to_atlas = brats_to_native.GetInverse()
        with clock("similarity_check"):
            checks = [SimilarityCheck("atlas", "t1ce_to_atlas", atlas_via, MIN_EDGE_CORR_ATLAS, paths[atlas_via],
                                      atlas_name,
                                      _similarity(small["t1ce"], atlas_target, t1ce_to_atlas, brain,
                                                  paths[atlas_via], atlas_name, t1ce_edges))]
            for m in MOVING:
                checks.append(SimilarityCheck(m, f"{m}_to_{ANCHOR}", m, MIN_EDGE_CORR_COREG, paths[m], paths["t1ce"].name,
                                              _similarity(small["t1ce"], small[m], results[m].transform, brain,
                                                          paths[m], paths["t1ce"].name, t1ce_edges)))
            similarity = {c.key: c.score for c in checks}
        with clock("deep_check"):
            if skull.stripped:
                deep = deep_brain(brain, small["t1ce"])
                for c in [c for c in checks if c.key in MOVING and c.name.endswith(f"_to_{ANCHOR}") and c.passed]:
                    score = round(edge_correlation(small["t1ce"], small[c.key], results[c.key].transform, deep,
                                                   t1ce_edges), 4)
                    checks.append(SimilarityCheck(c.key, f"{c.key}_deep_match", c.key, MIN_EDGE_CORR_DEEP, c.path,
                                                  c.target, score, "edge correlation 10 mm or more inside the brain",
                                                  "another subject's image, or one mirrored left-right (only the brain "
                                                  "outline matches)"))
        with clock("mirror_check"):
            # the atlas's left-right axis, carried into the exam: the head's own, however it lay in the scanner
            head_lr_axis = affine_parts(brats_to_native)[0][:, 0]
            mismatched = {c.key for c in checks if not c.passed}  # another subject's image needs no mirror question
            for c in [c for c in checks if c.key in MOVING and c.name.endswith(f"_to_{ANCHOR}") and c.key not in mismatched]:
                margin = mirror_margin(small["t1ce"], small[c.key], results[c.key].transform, c.score, brain,
                                       head_lr_axis, params, t1ce_edges)
                checks.append(SimilarityCheck(c.key, f"{c.key}_not_mirrored", c.key, MIN_MIRROR_MARGIN, c.path,
                                              c.target, margin, "edge correlation as given minus mirrored",
                                              "its voxels are mirrored left-right relative to the T1Gd (a wrong "
                                              "header in its conversion)"))
        with clock("optimum_check"):
            for c in [c for c in checks if c.key in MOVING and c.name.endswith(f"_to_{ANCHOR}") and c.passed]:
                checks.append(SimilarityCheck(c.key, f"{c.key}_at_optimum", c.key, MIN_OPTIMUM_MARGIN, c.path, c.target,
                                              round(optimum_margin[c.key], 4), "edge correlation minus its best 3-degree/3-mm neighbour's",
                                              "the registration ended off its optimum"))
            qc = qc_block(checks, case_id, allow_qc_failure)  # raises on a failed check unless allowed
            qc["input_skull_stripped"] = skull.record()
        with clock("resample"):
            atlas_mask = to_brats(atlas_ss, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkNearestNeighbor) > 0
            # The atlas mask is only refined inwards, so nothing outside its box is ever kept; a
            # plug-in skull-stripper sees the whole head, as it was trained to.
            box = bounding_box(atlas_mask, BRAIN_BOX_MARGIN_MM, whole_if_empty=True) if skull_strip == "atlas" or skull.stripped else None
            chains = {m: (compose(results[m].transform, brats_to_native) if m in results else brats_to_native)
                      for m in MODALITIES}
            brats = {m: to_brats(native[m], chains[m], box=box) for m in MODALITIES}
            fov = np.logical_and.reduce([field_of_view(native[m], chains[m], box) for m in MODALITIES])
        with clock("skullstrip"):
            if skull.stripped:
                mask = own_brain_mask(native["t1ce"], brats_to_native, fov, box)
            elif skull_strip == "atlas":
                mask = refine_atlas_mask(atlas_mask, brats, fov)
            else:
                mask = plugin_mask(skull_strip, brats["t1ce"]) & fov
            check_plausible(mask, paths["t1ce"])
        with clock("write"):
            written = _write_outputs(out, case_id, brats, mask, brats_to_native, native["t1ce"])
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous_threads)
    parameters = {"case_id": case_id, "backend": backend, "affine": affine, "n4": n4, "atlas_via": atlas_via,
                  "skull_strip": "input" if skull.stripped else skull_strip,
                  "input_skull_stripped": input_skull_stripped, "threads": threads,
                  "registration_threads": reg.REGISTRATION_THREADS,
                  "registration": params.as_dict(),
                  "affine_relaxation": reg.AFFINE_RELAXATION if affine else None,
                  "interpolation": "linear",
                  "min_edge_corr_coregistration": MIN_EDGE_CORR_COREG,
                  "min_edge_corr_atlas": MIN_EDGE_CORR_ATLAS, "min_mirror_margin": MIN_MIRROR_MARGIN,
                  "min_optimum_margin": MIN_OPTIMUM_MARGIN,
                  "min_edge_corr_deep": MIN_EDGE_CORR_DEEP if skull.stripped else None,
                  "atlas_metric_margin_mm": ATLAS_METRIC_MARGIN_MM if skull.stripped else None,
                  "allow_qc_failure": allow_qc_failure,
                  "output_grid": {"size": list(BRATS_SHAPE), "spacing_mm": BRATS_SPACING_MM[0], "origin_lps": list(BRATS_ORIGIN_LPS),
                                  "direction": "identity"}}
    extra = {
        "atlas": {role: {"path": str(p), "sha256": sha256_file(p)} for role, p in atlas.items()},
        "atlas_release": atlas_release(atlas),
        "registration_backend": reg.backend_version(backend),
        "coregistration_grid_spacing_mm": list(small["t1ce"].GetSpacing()),
        "coregistration_copy": REGISTRATION_COPY if backend == "simpleitk" else "native grid",
        "registration_results": {k: {"metric": r.metric, "iterations": r.iterations, "stop": r.stop,
                                     "start": r.extra.get("start"), "coarse_metric": r.extra.get("coarse_metric"),
                                     "fixed_image": r.extra.get("fixed_image"),
                                     "restart": r.extra.get("restart"),
                                     "parameters": list(r.transform.GetParameters()),
                                     "fixed_parameters": list(r.transform.GetFixedParameters()),
                                     "transform": r.transform.GetName()}
                                 for k, r in results.items()},
        "similarity_edge_corr": similarity,
        "qc": qc,
        "brain_volume_ml": round(float(mask.sum()) / 1000.0, 3),
        "cpu_s": {**clock.cpu, "total": round(sum(clock.cpu.values()), 3)},
    }
    prov = out / provenance_name("preprocess")
    write_provenance(prov, "preprocess", {f"{m}": paths[m] for m in MODALITIES}, parameters, started,
                     extra=extra, timings=clock.wall)
    written["provenance"] = prov
    return written


def own_brain_mask(t1ce: sitk.Image, brats_to_native: sitk.Transform, fov: np.ndarray,
                   box: tuple[slice, ...] | None) -> np.ndarray:
    """A skull-stripped exam's own brain on the BraTS grid: T1Gd's non-background region, moved
    with linear interpolation (a half-covered voxel counts) so that 5 mm slices do not leave steps,
    cut to what every modality covers, holes filled, its largest component."""
    arr = itk_array(t1ce, copy=False)
    inside = from_itk_array((arr != skull_presence.background_value(arr)).astype(np.float32), t1ce)
    return filled_largest_component((to_brats(inside, brats_to_native, box=box) >= 0.5) & fov)


@dataclass(frozen=True)
class SimilarityCheck:
    """One registration's similarity score and what it is judged against."""

    key: str          # the key of ``similarity_edge_corr`` (atlas, t1, t2, flair)
    name: str         # the check's name in the QC block
    modality: str     # the exam's image that was registered
    threshold: float
    path: Path
    target: str
    score: float
    measure: str = "edge correlation"
    problem: str = "another subject's image or a failed registration"

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold

    def reason(self, case_id: str) -> str:
        return (f"case {case_id}, {self.modality}: does not match {self.target} after registration "
                f"({self.measure} {self.score:.3f} < {self.threshold}): {self.problem}")


def mirrored(image: sitk.Image) -> sitk.Image:
    """The voxels flipped along the image's first axis under the same header: what a wrong
    conversion delivers (the header says left where the data shows right)."""
    flipped = sitk.Flip(image, [True, False, False], flipAboutOrigin=False)
    flipped.CopyInformation(image)
    return flipped


def affine_parts(transform: sitk.Transform) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) of a transform that is affine, read off its action on four points."""
    origin = np.array(transform.TransformPoint((0.0, 0.0, 0.0)))
    matrix = np.stack([np.array(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)], axis=1)
    return matrix, origin


def _reflection(point: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) of the reflection through the plane at ``point`` with ``normal``."""
    n = normal / np.linalg.norm(normal)
    return np.eye(3) - 2.0 * np.outer(n, n), 2.0 * float(point @ n) * n


def mirrored_start(fixed: sitk.Image, moving: sitk.Image, found: sitk.Transform, head_centre: np.ndarray,
                   head_lr_axis: np.ndarray) -> sitk.Euler3DTransform:
    """Where the registration of ``mirrored(moving)`` onto ``fixed`` should start: ``F ∘ found ∘ M``,
    with ``M`` the reflection through the head's mid-sagittal plane (in the fixed image) and ``F``
    the voxel flip of ``moving`` as a point map. Two reflections make a rigid motion, and a head
    being nearly symmetric, it lies close to the flipped image's optimum: no start search needed."""
    a_m, t_m = _reflection(np.asarray(head_centre, float), np.asarray(head_lr_axis, float))
    axis0 = np.array(moving.GetDirection()).reshape(3, 3)[:, 0]
    centre_m = np.array(moving.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in moving.GetSize()]))
    a_f, t_f = _reflection(centre_m, axis0)
    a_t, t_t = affine_parts(found)
    matrix = a_f @ a_t @ a_m
    offset = a_f @ (a_t @ t_m + t_t) + t_f
    return _euler_from_parts(matrix, offset, head_centre)  # (found may carry an affine's scaling)


def mirror_margin(fixed: sitk.Image, moving: sitk.Image, found: sitk.Transform, as_given: float, brain: np.ndarray,
                  head_lr_axis: np.ndarray, params: reg.RegistrationParams,
                  fixed_edges: np.ndarray | None = None) -> float:
    """Edge correlation of ``moving`` as given (``as_given``, after its registration ``found``) minus
    that of ``moving`` mirrored and registered again: below 0 when the mirrored image matches better.
    ``head_lr_axis``: the head's left-right direction in the fixed image's physical space."""
    centre = np.array(region_centre(fixed, brain))
    flipped = mirrored(moving)
    start = mirrored_start(fixed, moving, found, centre, head_lr_axis)
    refound = reg.register_from(fixed, flipped, start, params).transform
    return round(as_given - edge_correlation(fixed, flipped, refound, brain, fixed_edges), 4)


def _similarity(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, brain: np.ndarray, path: Path,
                target: str, fixed_edges: np.ndarray | None = None) -> float:
    """Edge correlation inside the brain after registration (no score at all when the brain left the image)."""
    if brain.sum() < 1000:
        raise InputError(path, f"registration to {target} failed: the brain falls outside the image")
    return round(edge_correlation(fixed, moving, transform, brain, fixed_edges), 4)


def qc_block(checks: list[SimilarityCheck], case_id: str, allow_failure: bool = False) -> dict:
    """DESIGN's provenance QC block of the similarity checks; a failed check raises unless ``allow_failure``.

    The error is the first failed check's reason (one line naming case, modality and score), so a
    refused case reads as it always did; an override keeps every failed check's reason.
    """
    failed = [c for c in checks if not c.passed]
    if failed and not allow_failure:
        raise InputError(failed[0].path, failed[0].reason(case_id) + " (--allow-qc-failure writes it anyway)")
    for c in failed:
        log.warning("%s: QC overridden: %s", case_id, c.reason(case_id))
    return {"checks": {c.name: {"score": c.score, "threshold": c.threshold, "passed": c.passed} for c in checks},
            "decision": "overridden" if failed else "pass",
            "reasons": [c.reason(case_id) for c in failed]}


def _write_outputs(out: Path, case_id: str, brats: dict[str, np.ndarray], mask: np.ndarray,
                   brats_to_native: sitk.Transform, t1ce_native: sitk.Image) -> dict[str, Path]:
    """Write everything in a staging folder, then move each file into place (provenance comes last)."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{case_id}.preprocess.", dir=out))
    try:
        rel: dict[str, Path] = {}
        for m in MODALITIES:
            rel[m] = Path(image_name(case_id, m))
            write_image(staging / rel[m], np.where(mask, brats[m], 0.0).astype(np.float32), brats_affine())
        rel["brainmask"] = Path(brainmask_name(case_id))
        write_labels(staging / rel["brainmask"], mask.astype(np.uint8), brats_affine())
        (staging / TRANSFORMS_DIR).mkdir()
        rel["transform"] = Path(TRANSFORMS_DIR) / TRANSFORM_NAME
        sitk.WriteTransform(brats_to_native, str(staging / rel["transform"]))
        rel["native_grid"] = Path(TRANSFORMS_DIR) / NATIVE_REFERENCE_NAME
        ref = sitk.Image(t1ce_native.GetSize(), sitk.sitkUInt8)
        ref.CopyInformation(t1ce_native)
        sitk.WriteImage(ref, str(staging / rel["native_grid"]), True)
        (out / TRANSFORMS_DIR).mkdir(exist_ok=True)
        for p in rel.values():
            os.replace(staging / p, out / p)
        return {k: out / p for k, p in rel.items()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
