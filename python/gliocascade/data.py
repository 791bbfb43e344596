"""Training data: cases, the one z-score normalisation, random crops, flips and intensity augmentation.

``zscore`` is shared by training and prediction so that a model always sees inputs normalised the
same way.
"""
from __future__ import annotations

import numpy as np


def zscore(images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-modality z-score of a (C, X, Y, Z) stack over the brain; voxels outside become 0.

    The brain is ``mask`` when given, else the voxels non-zero in every modality (the BraTS
    skull-stripped convention). A modality with zero spread is only centred.
    """
    img = np.asarray(images, dtype=np.float32)
    brain = (np.asarray(mask) > 0) if mask is not None else np.all(img != 0, axis=0)
    out = np.zeros_like(img, dtype=np.float32)
    if not brain.any():
        return out
    for c in range(img.shape[0]):
        vals = img[c][brain].astype(np.float64)
        mean, std = vals.mean(), vals.std()
        out[c][brain] = ((vals - mean) / (std if std > 0 else 1.0)).astype(np.float32)
    return out
