"""A start for rigid registration that holds for the poses real exams come in.

Mattes MI from a single centre-of-mass start converges only when the head is within about 10-15
degrees of the target; patients lie tilted by 20 degrees and more, and series of one exam are not
always stored in one pose. So the start is chosen, deterministically, among candidates:

1. every rotation of a grid of ``CANDIDATE_STEP_DEG`` steps about the three axes, up to
   ``CANDIDATE_MAX_DEG`` in total angle, each about the fixed image's centre of mass with the
   centres of mass matched;
2. each is scored by the metric alone on smoothed, ~4 mm copies of both images (cheap);
3. the ``REFINED`` best, and the plain centre-of-mass start, are optimised at that coarse level
   with at most ``COARSE_ITERATIONS`` steps, and the lowest metric wins.

When the plain centre-of-mass start wins (or reaches the winner's optimum within 2 degrees and
2 mm), it is returned unchanged, so an exam that registered
from it before registers exactly as before. Work is bounded by counts (candidates, iterations),
never by wall-clock time, and everything runs with the fixed thread count of ``registration``.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from . import registration as reg

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
    image = reg.as_float(image)
    factors = [max(1, int(round(spacing_mm / s))) for s in image.GetSpacing()]
    smooth = sitk.SmoothingRecursiveGaussian(image, [spacing_mm / 2 if f > 1 else 0.01 for f in factors])
    return sitk.Shrink(smooth, factors)


def _metric(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform, params: reg.RegistrationParams) -> float:
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(reg.REGISTRATION_THREADS)
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


def choose_start(fixed: sitk.Image, moving: sitk.Image, params: reg.RegistrationParams) -> StartChoice:
    """The best start for registering ``moving`` onto ``fixed`` (module docstring); fixed -> moving points."""
    with reg.fixed_threads():
        base = reg._initial_transform(fixed, moving, "moments")
        starts: dict[str, sitk.Transform] = {}
        for angles in candidate_angles():
            label = PLAIN if angles == (0.0, 0.0, 0.0) else "rotation %+.0f/%+.0f/%+.0f deg" % angles
            starts[label] = rotated(base, angles)
        f_coarse, m_coarse = coarse_copy(fixed), coarse_copy(moving)
        scored = sorted(starts, key=lambda k: (_metric(f_coarse, m_coarse, starts[k], params), k))
        coarse = replace(params, iterations=COARSE_ITERATIONS)
        refined = {label: reg._sitk_register(f_coarse, m_coarse, starts[label], coarse, levels=((1,), (0.0,)))
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
