"""Is an exam already skull-stripped? One documented decision per exam, made on T1Gd.

Public cohorts are often distributed skull-stripped (BraTS, many TCIA collections after HD-BET),
hospital exams with skull. The two need different atlas targets: a brain registered onto a whole
head lands shrunk inside the skull and is written wrong without a word. The rule reads two
properties that skull-stripping leaves behind and a head image does not have:

- the **head volume**: the largest 6-connected region brighter than 5 % of the 99th percentile,
  holes filled, is a brain (700-2200 mL, ``PLAUSIBLE_BRAIN_ML``) once stripped, while a head with
  skull, scalp and neck measures 2500 mL and more (raw TCGA-FG-6692 3100-3230 mL, a sagittal
  volunteer T1 4190 mL, the SRI24 head 4660 mL; stripped cases 1450-1640 mL);
- an **exactly constant outside**: skull-strippers write 0 (or, after z-scoring, one constant)
  outside the brain, so nearly every dark voxel (below that 5 % above the image's most frequent
  value) holds exactly that value (measured 0.997-1.000 on stripped images), while a head image has
  scanner noise in the air (0.05-0.19 on the raw exam; 0.47 on the zero-padded SRI24 head).

An image is taken as stripped only when both hold (volume <= 2200 mL and >= 90 % of dark voxels
exactly 0); a thick-slab exam that covers only part of a head with skull has a small volume but
noisy air, and a head with zero-padded air has a zero outside but a head's volume, so neither
alone decides. The decision is T1Gd's (the image registered to the atlas); the other modalities
are measured too and a disagreement is logged as a warning, since it usually means one series
was exported from another stage of processing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .sitk_arrays import itk_array
from .skullstrip import PLAUSIBLE_BRAIN_ML

log = logging.getLogger(__name__)

CHOICES = ("auto", "yes", "no")
DARK_FRACTION_OF_P99 = 0.05
MIN_ZERO_FRACTION_OF_DARK = 0.90
MAX_STRIPPED_VOLUME_ML = PLAUSIBLE_BRAIN_ML[1]


@dataclass(frozen=True)
class SkullMeasure:
    """What the rule reads from one image."""

    volume_ml: float
    zero_fraction_of_dark: float

    @property
    def stripped(self) -> bool:
        return self.volume_ml <= MAX_STRIPPED_VOLUME_ML and self.zero_fraction_of_dark >= MIN_ZERO_FRACTION_OF_DARK

    def as_dict(self) -> dict:
        return {"volume_ml": round(self.volume_ml, 1), "zero_fraction_of_dark": round(self.zero_fraction_of_dark, 4),
                "stripped": self.stripped}


@dataclass(frozen=True)
class SkullDecision:
    """The exam's decision, how it was reached, and the per-modality measures (for the QC block)."""

    stripped: bool
    source: str          # "detected" or "--input-skull-stripped yes|no"
    reason: str
    measures: dict[str, SkullMeasure]

    def record(self) -> dict:
        return {"value": self.stripped, "source": self.source, "reason": self.reason,
                "measures": {m: s.as_dict() for m, s in self.measures.items()}}


def measure(image: sitk.Image) -> SkullMeasure:
    """Head volume and the exactly-zero share of the dark voxels of one image (see module docstring)."""
    arr = itk_array(image, copy=False)
    background = background_value(arr)
    above = arr[arr > background]
    if above.size == 0:
        return SkullMeasure(0.0, 1.0)
    cut = background + DARK_FRACTION_OF_P99 * (float(np.percentile(above, 99)) - background)
    bright = arr > cut
    labels, n = ndimage.label(bright)
    if n == 0:
        return SkullMeasure(0.0, 1.0)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    head = ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    dark = ~bright
    zero_share = float(np.count_nonzero(dark & (arr == background)) / max(np.count_nonzero(dark), 1))
    return SkullMeasure(float(head.sum()) * voxel_ml, zero_share)


def background_value(arr: np.ndarray) -> float:
    """The most frequent of the image's darkest tenth of values: 0 for most stripped images, the
    constant a z-scored one was given outside the brain; for a head with noisy air a value of no
    weight (a large bright constant region, such as a phantom's, is never taken for the outside)."""
    sample = arr[::3, ::3, ::3]
    dark = sample[sample <= np.percentile(sample, 10)]
    values, counts = np.unique(dark, return_counts=True)
    return float(values[int(np.argmax(counts))])


def decide(images: dict[str, sitk.Image], override: str = "auto", case_id: str = "") -> SkullDecision:
    """The exam's skull-stripped decision from T1Gd (``override`` yes/no skips the rule but still measures)."""
    if override not in CHOICES:
        raise ValueError(f"unknown --input-skull-stripped {override!r} (choose from {', '.join(CHOICES)})")
    measures = {m: measure(img) for m, img in images.items()}
    t1ce = measures["t1ce"]
    others = {m: s.stripped for m, s in measures.items() if m != "t1ce" and s.stripped != t1ce.stripped}
    if others:
        log.warning("%s: the modalities disagree on skull-stripping (T1Gd %s; %s): deciding from T1Gd",
                    case_id, _word(t1ce.stripped), ", ".join(f"{m} {_word(v)}" for m, v in others.items()))
    if override != "auto":
        stripped = override == "yes"
        return SkullDecision(stripped, f"--input-skull-stripped {override}",
                             f"set by the user (the rule would say {_word(t1ce.stripped)})", measures)
    reason = (f"T1Gd head volume {t1ce.volume_ml:.0f} mL ({'<=' if t1ce.volume_ml <= MAX_STRIPPED_VOLUME_ML else '>'} "
              f"{MAX_STRIPPED_VOLUME_ML:.0f}), {100 * t1ce.zero_fraction_of_dark:.1f} % of dark voxels exactly 0 "
              f"({'>=' if t1ce.zero_fraction_of_dark >= MIN_ZERO_FRACTION_OF_DARK else '<'} "
              f"{100 * MIN_ZERO_FRACTION_OF_DARK:.0f} %)")
    return SkullDecision(t1ce.stripped, "detected", reason, measures)


def _word(stripped: bool) -> str:
    return "skull-stripped" if stripped else "with skull"
