"""Rigid (and optional affine) registration behind one interface: SimpleITK or antspyx.

Every backend returns an ITK transform that maps a point of the FIXED image's physical space
(ITK LPS coordinates) to the MOVING image's physical space, which is what ``sitk.Resample``
expects. Cohort studies need bit-identical results, so the SimpleITK backend samples the metric
with a fixed seed and runs the optimiser with a fixed number of threads (``REGISTRATION_THREADS``),
whatever ITK's or OpenMP's global thread settings are. The metric is sampled on a jittered regular
grid (stratified) rather than at independent random voxels: at the same cost the optimum moves far
less with the sample set, so the result does not hinge on the seed (README, preprocessing).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

BACKENDS = ("simpleitk", "ants")
SAMPLING_STRATEGIES = ("regular", "random")
# The metric is summed per work unit; fixing their count makes the sum independent of the machine.
REGISTRATION_THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int = REGISTRATION_THREADS):
    """Run ITK with ``n`` threads: the metric's per-thread partial sums then add up identically."""
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


@dataclass(frozen=True)
class RegistrationParams:
    """Parameters of the SimpleITK backend (recorded in provenance)."""

    bins: int = 32
    sampling: str = "regular"  # "regular" (jittered grid) or "random"
    sampling_percentage: float = 0.20
    seed: int = 20190101
    learning_rate: float = 2.0
    min_step: float = 3e-3  # ~3 µm of shift: smaller steps crawl along flat valleys for no accuracy
    iterations: int = 200
    # Each reversal of the gradient's direction multiplies the step by this factor. At 0.5 a noisy
    # sampled metric shrinks the step to ``min_step`` within about 20 iterations of the finest level,
    # short of the optimum: a corpus T1 stopped 1.0 mm from its exact truth at a worse metric than
    # the truth's own optimum (0.3 mm). At 0.8 it reaches it for about 15 % more CPU time (README).
    relaxation: float = 0.8
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    init: str = "robust"  # candidate rotations (the robust start below); "moments": centre of mass only

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLING_STRATEGIES:
            raise ValueError(f"unknown metric sampling {self.sampling!r} (choose from {SAMPLING_STRATEGIES})")

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# The affine refinement keeps the faster step decay: with the rigid default (0.8) its nine matrix
# parameters overshoot and a phantom scaled by 6 % ended 5.5 mm off at a worse metric than its
# rigid start (0.2 mm at 0.5; tests/test_registration.py).
AFFINE_RELAXATION = 0.5


@dataclass
class RegistrationResult:
    """The transform (fixed -> moving points) and what the optimiser reports."""

    transform: sitk.Transform
    metric: float
    iterations: int
    stop: str
    extra: dict = field(default_factory=dict)


def as_float(image: sitk.Image) -> sitk.Image:
    """A float32 copy (registration metrics and linear resampling need real values)."""
    return sitk.Cast(image, sitk.sitkFloat32)


def _initial_transform(fixed: sitk.Image, moving: sitk.Image, init: str) -> sitk.Euler3DTransform:
    mode = {"moments": sitk.CenteredTransformInitializerFilter.MOMENTS,
            "geometry": sitk.CenteredTransformInitializerFilter.GEOMETRY}[init]
    tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)
    return sitk.Euler3DTransform(tx)


def _sitk_register(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform,
                   params: RegistrationParams, fixed_mask: sitk.Image | None = None,
                   moving_mask: sitk.Image | None = None,
                   levels: tuple[tuple[int, ...], tuple[float, ...]] | None = None) -> RegistrationResult:
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(REGISTRATION_THREADS)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.bins)
    # Image gradients only at the sampled points, not as whole gradient images per level: the
    # atlas is 9 M voxels and only ~3 % of them are ever sampled (whole gradient images took
    # twice the CPU time on the real exam).
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetMetricSamplingStrategy({"regular": reg.REGULAR, "random": reg.RANDOM}[params.sampling])
    reg.SetMetricSamplingPercentage(params.sampling_percentage, params.seed)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    if moving_mask is not None:
        reg.SetMetricMovingMask(moving_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=params.learning_rate, minStep=params.min_step,
        numberOfIterations=params.iterations, relaxationFactor=params.relaxation,
        gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, sigmas = levels or (params.shrink_factors, params.smoothing_sigmas_mm)
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    out = reg.Execute(as_float(fixed), as_float(moving))
    if isinstance(out, sitk.CompositeTransform) and out.GetNumberOfTransforms() == 1:
        out = out.GetNthTransform(0)
    return RegistrationResult(out, float(reg.GetMetricValue()), int(reg.GetOptimizerIteration()),
                              reg.GetOptimizerStopConditionDescription())


def _ants_register(fixed: sitk.Image, moving: sitk.Image, kind: str, seed: int) -> RegistrationResult:
    """antspyx ``registration`` (what BrainLes uses); its .mat is read back as an ITK transform."""
    import ants

    with tempfile.TemporaryDirectory(prefix="gliocascade_ants_") as tmp:
        f_path, m_path = Path(tmp) / "fixed.nii.gz", Path(tmp) / "moving.nii.gz"
        sitk.WriteImage(as_float(fixed), str(f_path))
        sitk.WriteImage(as_float(moving), str(m_path))
        res = ants.registration(ants.image_read(str(f_path)), ants.image_read(str(m_path)),
                                type_of_transform=kind, outprefix=str(Path(tmp) / "ants_"),
                                random_seed=seed)
        mats = [p for p in res["fwdtransforms"] if str(p).endswith(".mat")]
        if len(mats) != 1:
            raise RuntimeError(f"antspyx returned unexpected transforms {res['fwdtransforms']}")
        tx = sitk.ReadTransform(str(mats[0]))
    return RegistrationResult(tx, float("nan"), -1, f"ants {kind}")


def register(fixed: sitk.Image, moving: sitk.Image, backend: str = "simpleitk", affine: bool = False,
             params: RegistrationParams | None = None, fixed_mask: sitk.Image | None = None) -> RegistrationResult:
    """Register ``moving`` onto ``fixed``: rigid (Mattes MI), then optionally affine.

    Returns the fixed -> moving point transform. With ``params.init`` ``robust`` (the default) the
    start is chosen among candidate rotations (the robust start below).
    """
    params = params or RegistrationParams()
    if backend == "ants":
        return _ants_register(fixed, moving, "Affine" if affine else "Rigid", params.seed)
    if backend != "simpleitk":
        raise ValueError(f"unknown registration backend {backend!r} (choose from {BACKENDS})")
    with fixed_threads():
        return _sitk_rigid_then_affine(fixed, moving, affine, params, fixed_mask)


def register_from(fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform,
                  params: RegistrationParams | None = None) -> RegistrationResult:
    """Rigid registration (SimpleITK) from a start the caller already knows to be close, no start search."""
    with fixed_threads():
        return _sitk_register(fixed, moving, initial, params or RegistrationParams())


def _sitk_rigid_then_affine(fixed: sitk.Image, moving: sitk.Image, affine: bool, params: RegistrationParams,
                            fixed_mask: sitk.Image | None) -> RegistrationResult:
    if params.init == "robust":
        rigid = _robust_rigid(fixed, moving, params, fixed_mask)
    else:
        rigid = _sitk_register(fixed, moving, _initial_transform(fixed, moving, params.init), params, fixed_mask)
    if not affine:
        return rigid
    aff = sitk.AffineTransform(3)
    rig = sitk.Euler3DTransform(rigid.transform)
    aff.SetMatrix(rig.GetMatrix())
    aff.SetTranslation(rig.GetTranslation())
    aff.SetCenter(rig.GetCenter())
    refined = _sitk_register(fixed, moving, aff, replace(params, relaxation=AFFINE_RELAXATION), fixed_mask,
                             levels=(params.shrink_factors[-2:], params.smoothing_sigmas_mm[-2:]))
    refined.extra["rigid_metric"] = rigid.metric
    return refined


def _robust_rigid(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams,
                  fixed_mask: sitk.Image | None) -> RegistrationResult:
    """Rigid registration from the chosen start, checked against the plain start (the robust start below)."""
    choice = choose_start(fixed, moving, params)
    result = _sitk_register(fixed, moving, choice.plain, params, fixed_mask)
    label = PLAIN
    if choice.label != PLAIN:
        other = _sitk_register(fixed, moving, choice.transform, params, fixed_mask)
        if other.metric < result.metric and not same_pose(other.transform, result.transform, 1.0, 1.0):
            result, label = other, choice.label
    result.extra.update({**choice.record(), "start": label, "coarse_winner": choice.label})
    return result


def transform_points(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """Apply an ITK transform to an (N, 3) array of LPS points."""
    return np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in np.asarray(points)])


def backend_version(backend: str) -> str:
    """The version string of the library behind ``backend`` (for provenance)."""
    if backend == "ants":
        import ants

        return f"antspyx {getattr(ants, '__version__', '?')}"
    return f"SimpleITK {sitk.Version.VersionString()}"


def limit_ants_threads(n: int) -> None:
    """ANTs reads its thread count from the environment at each call."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)


def normalized_mutual_information(a: np.ndarray, b: np.ndarray, mask: np.ndarray, bins: int = 32) -> float:
    """Studholme's NMI (H(A) + H(B)) / H(A, B) over ``mask``: 1 for unrelated images, up to 2.

    Intensities are binned between their 1st and 99th percentiles inside the mask, so the value
    does not depend on the scanner's intensity scale.
    """
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 100:
        return 1.0

    def binned(v: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(v, [1, 99])
        if hi <= lo:
            return np.zeros(v.shape, dtype=np.int64)
        return np.clip(((v - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)

    joint = np.bincount(binned(x) * bins + binned(y), minlength=bins * bins).astype(np.float64)
    p = joint / joint.sum()
    pa, pb = p.reshape(bins, bins).sum(1), p.reshape(bins, bins).sum(0)

    def entropy(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    return (entropy(pa) + entropy(pb)) / max(entropy(p), 1e-12)


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two images over ``mask``."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


# --------------------------------------------------------------------------- robust start
# A start for rigid registration that holds for the poses real exams come in.
#
# Mattes MI from a single centre-of-mass start converges only when the head is within about 10-15
# degrees of the target; patients lie tilted by 20 degrees and more, and series of one exam are not
# always stored in one pose. So the start is chosen, deterministically, among candidates:
#
# 1. every rotation of a grid of ``CANDIDATE_STEP_DEG`` steps about the three axes, up to
#    ``CANDIDATE_MAX_DEG`` in total angle, each about the fixed image's centre of mass with the
#    centres of mass matched;
# 2. each is scored by the metric alone on smoothed, ~4 mm copies of both images (cheap);
# 3. the ``REFINED`` best, and the plain centre-of-mass start, are optimised at that coarse level
#    with at most ``COARSE_ITERATIONS`` steps, and the lowest metric wins.
#
# When the plain centre-of-mass start wins (or reaches the winner's optimum within 2 degrees and
# 2 mm), it is returned unchanged, so an exam that registered
# from it before registers exactly as before. Work is bounded by counts (candidates, iterations),
# never by wall-clock time, and everything runs with the fixed thread count of ``registration``.

CANDIDATE_STEP_DEG = 15.0
CANDIDATE_MAX_DEG = 30.0
COARSE_SPACING_MM = 4.0
COARSE_ITERATIONS = 50
REFINED = 2
PLAIN = "centre of mass"


@dataclass(frozen=True)
class StartChoice:
    """The chosen start and how it was found (for provenance)."""

    transform: sitk.Transform
    label: str
    coarse_metric: float
    candidates: int
    plain: sitk.Transform  # the centre-of-mass start, run as well whenever another start wins

    def record(self) -> dict:
        return {"start": self.label, "coarse_metric": round(self.coarse_metric, 5), "candidates": self.candidates}


def candidate_angles(step_deg: float = CANDIDATE_STEP_DEG, max_deg: float = CANDIDATE_MAX_DEG) -> list[tuple]:
    """Euler angle triples (degrees) of the grid, identity first, total rotation angle <= ``max_deg``."""
    n = int(round(max_deg / step_deg))
    steps = [k * step_deg for k in range(-n, n + 1)]
    out = [(0.0, 0.0, 0.0)]
    for angles in itertools.product(steps, repeat=3):
        if angles != (0.0, 0.0, 0.0) and _total_angle(angles) <= max_deg + 1e-6:
            out.append(angles)
    return out


def _total_angle(angles_deg: tuple) -> float:
    e = sitk.Euler3DTransform((0, 0, 0), *[math.radians(a) for a in angles_deg])
    return rotation_angle_deg(np.array(e.GetMatrix()).reshape(3, 3))


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """The angle of a 3x3 rotation matrix (from its trace)."""
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(matrix) - 1) / 2))))


def coarse_copy(image: sitk.Image, spacing_mm: float = COARSE_SPACING_MM) -> sitk.Image:
    """Smoothed and shrunk to about ``spacing_mm`` per axis (thick slices are left as they are)."""
    image = as_float(image)
    factors = [max(1, int(round(spacing_mm / s))) for s in image.GetSpacing()]
    smooth = sitk.SmoothingRecursiveGaussian(image, [spacing_mm / 2 if f > 1 else 0.01 for f in factors])
    return sitk.Shrink(smooth, factors)


def _metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, params: RegistrationParams) -> float:
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(REGISTRATION_THREADS)
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.bins)
    method.SetMetricSamplingStrategy(method.REGULAR)
    method.SetMetricSamplingPercentage(min(1.0, 2 * params.sampling_percentage), params.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(transform, inPlace=False)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # too few samples overlap: the candidate is far off
        return math.inf


def rotated(start: sitk.Euler3DTransform, angles_deg: tuple) -> sitk.Euler3DTransform:
    """``start`` with its rotation replaced by ``angles_deg`` about the same centre (same centre-to-centre map)."""
    out = sitk.Euler3DTransform(start)
    out.SetRotation(*[math.radians(a) for a in angles_deg])
    return out


def choose_start(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParams) -> StartChoice:
    """The best start for registering ``moving`` onto ``fixed`` (module docstring); fixed -> moving points."""
    with fixed_threads():
        base = _initial_transform(fixed, moving, "moments")
        starts: dict[str, sitk.Transform] = {}
        for angles in candidate_angles():
            label = PLAIN if angles == (0.0, 0.0, 0.0) else "rotation %+.0f/%+.0f/%+.0f deg" % angles
            starts[label] = rotated(base, angles)
        f_coarse, m_coarse = coarse_copy(fixed), coarse_copy(moving)
        scored = sorted(starts, key=lambda k: (_metric(f_coarse, m_coarse, starts[k], params), k))
        coarse = replace(params, iterations=COARSE_ITERATIONS)
        refined = {label: _sitk_register(f_coarse, m_coarse, starts[label], coarse, levels=((1,), (0.0,)))
                   for label in dict.fromkeys([PLAIN, *scored[:REFINED]])}
    label = min(refined, key=lambda k: (refined[k].metric, k))
    start = base if label == PLAIN else refined[label].transform
    return StartChoice(start, label, refined[label].metric, len(starts), base)


def same_pose(a: sitk.Transform, b: sitk.Transform, deg: float = 2.0, mm: float = 2.0) -> bool:
    """Two rigid transforms within ``deg`` of rotation and ``mm`` of shift at their centre."""
    ea, eb = sitk.Euler3DTransform(a), sitk.Euler3DTransform(b)
    ma, mb = np.array(ea.GetMatrix()).reshape(3, 3), np.array(eb.GetMatrix()).reshape(3, 3)
    angle = rotation_angle_deg(ma.T @ mb)
    centre = ea.GetCenter()
    shift = np.linalg.norm(np.subtract(ea.TransformPoint(centre), eb.TransformPoint(centre)))
    return angle <= deg and shift <= mm
