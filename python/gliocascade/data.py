"""Training data: cases, the one z-score normalisation, random crops, flips and intensity augmentation.

``zscore`` is shared by training and prediction so that a model always sees inputs normalised the
same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import MODALITIES, Case, anchor_modality, check_same_grid, discover_case, read_labels, read_modalities
from .labels import labels_to_regions
from .layout import seg_name


def present_channels(images: np.ndarray) -> list[int]:
    """Indices of the channels that hold an image (an absent modality is an all-zero channel)."""
    return [c for c in range(images.shape[0]) if np.asarray(images[c]).any()]


def brain_of(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The brain z-scoring and inference use: ``mask`` when given, else the voxels non-zero in every
    present modality (all false when none is present)."""
    if mask is not None:
        return np.asarray(mask) > 0
    present = present_channels(images)
    if not present:
        return np.zeros(images.shape[1:], dtype=bool)
    return np.all(np.asarray(images)[present] != 0, axis=0)


def zscore(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-modality z-score of a (C, X, Y, Z) stack over the brain; voxels outside become 0.

    The brain is ``mask`` when given, else the voxels non-zero in every present modality (the BraTS
    skull-stripped convention). An absent modality is an all-zero channel (io.read_modalities) and
    stays zero. A modality with zero spread is only centred.
    """
    img = np.asarray(images, dtype=np.float32)
    present = present_channels(img)
    out = np.zeros_like(img, dtype=np.float32)
    brain = brain_of(img, mask)
    if not brain.any():
        return out
    for c in present:
        vals = img[c][brain].astype(np.float64)
        mean, std = vals.mean(), vals.std()
        out[c][brain] = ((vals - mean) / (std if std > 0 else 1.0)).astype(np.float32)
    return out


# --------------------------------------------------------------------------- cases

@dataclass
class Volume:
    """One training case in memory: z-scored images (4, X, Y, Z) float32 and regions (3, X, Y, Z) uint8."""

    case_id: str
    images: np.ndarray
    regions: np.ndarray

    @property
    def present(self) -> list[int]:
        """Channels of the modalities this case has (the others are zero)."""
        return present_channels(self.images)


def cases_from_folder(folder: str | Path, label_convention: str | None = None) -> list[Case]:
    """Every case folder below ``folder``; a folder that is not a complete case with a seg is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "data folder not found")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise InputError(folder, "data folder holds no case folders")
    cases = []
    for sub in subs:
        case = discover_case(sub)  # raises naming the missing modality
        if case.seg is None:
            raise InputError(sub, f"case {case.case_id} has no segmentation ({seg_name('<id>')}) to train on")
        if label_convention:
            case.label_convention = str(label_convention)
        cases.append(case)
    return cases


def cases_from_samplesheet(path: str | Path, label_convention: str | None = None) -> list[Case]:
    """Rows of a samplesheet as training cases: each needs t1,t1ce,t2,flair in BraTS space and a seg."""
    from .samplesheet import read_samplesheet

    cases = []
    for row in read_samplesheet(path):
        if row.problems:
            raise InputError(path, f"case {row.case_id}: {row.problems[0]}")
        if row.dicom_dir is not None:
            raise InputError(path, f"case {row.case_id}: training needs preprocessed NIfTI images, not dicom_dir")
        if row.seg is None:
            raise InputError(path, f"case {row.case_id}: no seg given (training needs a seg column)")
        case = row.to_case()
        if label_convention:
            case.label_convention = str(label_convention)
        cases.append(case)
    return cases


def refuse_implausible_reference(seg: Path, labels: np.ndarray, convention: str, brain: np.ndarray) -> None:
    """A model learns what it is shown: a reference filling the image or the brain box, or lying
    outside the brain, stops training (metrics.reference_qc, whose limits are documented there)."""
    from .metrics import reference_qc

    qc = reference_qc(labels, convention, brain)
    if qc["decision"] == "fail":
        raise InputError(seg, f"implausible reference: {'; '.join(qc['reasons'])}; refusing to train on it")


def load_volume(case: Case, orientation: str = "LPS") -> Volume:
    """Read, check (same grid, labels of the convention), reorient and normalise one case.

    Images, mask and labels are brought to ``orientation`` (default LPS, the BraTS storage order
    and ``orientation.BRATS_ORIENTATION``) before z-scoring, so a case gives the same training
    arrays whatever order its axes are stored in; the model card records the orientation.
    """
    from .orientation import to_orientation

    # a space=brats case may lack modalities (their channels stay zero); the model card records which
    stacked, mask, ref = read_modalities(case.images, case.case_id, case.brainmask, optional=MODALITIES)
    labels = None
    if case.seg is not None:
        lab = read_labels(case.seg, case.label_convention)
        check_same_grid(case.images[anchor_modality(case.images)], ref, case.seg, (lab[0], lab[1]))
        labels = lab[0]
        # where the images have data, whatever mask z-scores them: a tumour must lie there
        refuse_implausible_reference(case.seg, labels, case.label_convention, brain_of(stacked))
    try:
        stacked, mask, labels = (None if a is None else to_orientation(a, ref[1], orientation)
                                 for a in (stacked, mask, labels))
    except ValueError as exc:
        raise InputError(case.images[anchor_modality(case.images)], str(exc)) from None
    images = zscore(stacked, mask)
    regions = (labels_to_regions(labels, case.label_convention).astype(np.uint8) if labels is not None
               else np.zeros((3, *images.shape[1:]), dtype=np.uint8))
    return Volume(case.case_id, images, regions)


# --------------------------------------------------------------------------- augmentation

def random_crop(images: np.ndarray, regions: np.ndarray, size: tuple[int, int, int] | list[int],
                rng: np.random.Generator, fg_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` crop of (C, X, Y, Z) arrays; axes shorter than ``size`` are zero-padded first.

    With probability ``fg_prob`` the crop is centred (as far as the bounds allow) on a random
    tumour voxel, so that small crops of small tumours still see tumour.
    """
    size = tuple(int(s) for s in size)
    pad = [(0, 0)] + [((s - n) // 2, s - n - (s - n) // 2) if n < s else (0, 0) for n, s in zip(images.shape[1:], size)]
    if any(p != (0, 0) for p in pad):
        images = np.pad(images, pad)
        regions = np.pad(regions, pad)
    shape = images.shape[1:]
    hi = [n - s for n, s in zip(shape, size)]
    if fg_prob > 0 and rng.random() < fg_prob and regions[0].any():
        fg = np.argwhere(regions[0])
        centre = fg[rng.integers(len(fg))]
        start = [int(np.clip(c - s // 2, 0, h)) for c, s, h in zip(centre, size, hi)]
    else:
        start = [int(rng.integers(0, h + 1)) for h in hi]
    sl = (slice(None),) + tuple(slice(a, a + s) for a, s in zip(start, size))
    return images[sl], regions[sl]


def random_flip(images: np.ndarray, regions: np.ndarray, rng: np.random.Generator,
                p: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Flip images and regions together along each spatial axis with probability ``p``."""
    for axis in (1, 2, 3):
        if rng.random() < p:
            images = np.flip(images, axis)
            regions = np.flip(regions, axis)
    return images, regions


def intensity_augment(images: np.ndarray, rng: np.random.Generator, shift: float = 0.1,
                      scale: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
    """Per channel: x * U(0.9, 1.1) + U(-0.1, 0.1) * std(x over the brain); outside the brain stays 0.

    The brain is ``brain_of`` the z-scored crop: where z-scoring wrote values (it leaves zeros outside).
    """
    out = np.array(images, dtype=np.float32, copy=True)
    brain = brain_of(out)
    for c in range(out.shape[0]):
        s = rng.uniform(*scale)
        vals = out[c][brain]
        std = float(vals.std()) if vals.size else 0.0
        out[c][brain] = vals * np.float32(s) + np.float32(rng.uniform(-shift, shift) * std)
    return out


def augment(volume: Volume, crop: list[int] | tuple[int, int, int], rng: np.random.Generator,
            fg_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's training augmentation: random crop, random flips, intensity shift and scale."""
    images, regions = random_crop(volume.images, volume.regions, crop, rng, fg_prob)
    images, regions = random_flip(images, regions, rng)
    images = intensity_augment(images, rng)
    return np.ascontiguousarray(images), np.ascontiguousarray(regions)


def drop_modalities(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Modality dropout: zero each present channel with probability ``p``, never all of them, so the
    model learns to segment with the modalities a hospital exam actually has. ``p`` 0 draws nothing
    from ``rng`` (training without dropout stays bit-identical)."""
    present = present_channels(images)
    if p <= 0 or len(present) < 2:
        return images
    drop = [c for c in present if rng.random() < p]
    if len(drop) == len(present):
        drop.remove(drop[int(rng.integers(len(drop)))])  # keep one, chosen at random
    if not drop:
        return images
    out = np.array(images, copy=True)
    out[drop] = 0
    return out

