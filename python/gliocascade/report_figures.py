"""Slice images of a case for its report page: label fills with outlines, reference outlines, disagreement.

Drawn with numpy and written as compressed PNG at the voxel grid through Pillow (no matplotlib;
the page enlarges them without smoothing): a cohort of hundreds of cases must render in minutes. Arrays are expected in RAS order (as
``nibabel.as_closest_canonical`` gives them); an axial slice is shown with the patient's right on
the right and anterior at the top. Outlines are drawn opaque over semi-transparent fills so a
one-voxel enhancing rim stays visible.
"""
from __future__ import annotations

import base64
import io as _io
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .qc_flags import STRUCTURE_26

# RGB 0-255 per label value (2019 and 2023 enhancing share yellow).
LABEL_RGB = {1: (220, 26, 26), 2: (26, 204, 51), 3: (255, 217, 0), 4: (255, 217, 0)}
REFERENCE_RGB = (0, 220, 255)
FALSE_POSITIVE_RGB = (255, 120, 0)
FALSE_NEGATIVE_RGB = (60, 110, 255)
FILL_ALPHA = 0.35
PANEL_PX = 192  # small slices are enlarged (nearest neighbour) to about this size
N_MOSAIC = 6


@dataclass(frozen=True)
class Component:
    """The largest 26-connected tumour component: its mask, voxel count, centre and z-range."""

    mask: np.ndarray
    voxels: int
    centre: tuple[int, int, int]
    z_range: tuple[int, int]


def largest_component(labels: np.ndarray) -> Component | None:
    """The largest 26-connected component of ``labels > 0`` (None for an empty map)."""
    components, n = ndimage.label(np.asarray(labels) > 0, structure=STRUCTURE_26)
    if n == 0:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    mask = components == int(sizes.argmax())
    idx = np.argwhere(mask)
    centre = tuple(int(v) for v in np.round(idx.mean(axis=0)))
    z = idx[:, 2]
    return Component(mask, int(sizes.max()), centre, (int(z.min()), int(z.max())))


def mosaic_slices(z_range: tuple[int, int], n: int = N_MOSAIC) -> list[int]:
    """``n`` axial slice indices evenly spanning ``z_range`` (fewer when the range is thinner)."""
    lo, hi = z_range
    return sorted({int(round(v)) for v in np.linspace(lo, hi, n)})


def window(image: np.ndarray) -> tuple[float, float]:
    """Display range: 1st to 99th percentile of the non-zero voxels."""
    inside = image[image > 0]
    if inside.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(inside[:: max(1, inside.size // 200_000)], [1, 99])
    return float(lo), float(max(hi, lo + 1e-6))


def view(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """A 2-D slice of a RAS volume as displayed: rows top to bottom, columns left to right."""
    if axis == "axial":
        sl = volume[:, :, index]
    elif axis == "coronal":
        sl = volume[:, index, :]
    else:
        sl = volume[index, :, :]
    return np.flipud(sl.T)


def outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner boundary of a 2-D mask."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def grey_rgb(image2d: np.ndarray, lohi: tuple[float, float]) -> np.ndarray:
    """A windowed slice as float RGB in 0-255."""
    lo, hi = lohi
    g = np.clip((image2d.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
    return np.repeat(g[..., None], 3, axis=2)


def _blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float32)


def draw_labels(rgb: np.ndarray, labels2d: np.ndarray, reference2d: np.ndarray | None = None) -> np.ndarray:
    """Fill each label semi-transparently, then outline it opaque; the reference's regions outlined in cyan."""
    rgb = rgb.copy()
    for value, colour in LABEL_RGB.items():
        _blend(rgb, labels2d == value, colour, FILL_ALPHA)
    for value, colour in LABEL_RGB.items():
        rgb[outline(labels2d == value)] = colour
    if reference2d is not None:
        for region in reference2d:
            rgb[outline(region)] = REFERENCE_RGB
    return rgb


def draw_disagreement(rgb: np.ndarray, pred2d: np.ndarray, ref2d: np.ndarray) -> np.ndarray:
    """Prediction-only voxels in orange, reference-only in blue, both outlined in cyan (reference)."""
    rgb = rgb.copy()
    _blend(rgb, pred2d & ~ref2d, FALSE_POSITIVE_RGB, 0.8)
    _blend(rgb, ref2d & ~pred2d, FALSE_NEGATIVE_RGB, 0.8)
    rgb[outline(ref2d)] = REFERENCE_RGB
    return rgb


def draw_contours(rgb: np.ndarray, masks: list[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    """Opaque outlines of 2-D masks (atlas brain, brain mask) in their colours."""
    rgb = rgb.copy()
    for mask, colour in masks:
        rgb[outline(mask)] = colour
    return rgb


def png_b64(rgb: np.ndarray) -> str:
    """Base64 PNG of a float RGB image at its own resolution (the page enlarges it: see ``display_size``)."""
    from PIL import Image

    img = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="PNG", compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def display_size(shape2d: tuple[int, ...], aspect: float = 1.0, target_px: int = PANEL_PX) -> tuple[int, int]:
    """(width, height) in CSS pixels: small slices enlarged by an integer factor, rows scaled by ``aspect``
    (row spacing over column spacing). Encoding at the voxel grid and enlarging in the browser keeps
    the PNGs small and quick to write."""
    rows, cols = shape2d[:2]
    factor = max(1, int(target_px // max(rows, cols)))
    return cols * factor, max(1, int(round(rows * factor * aspect)))


def thumbnail_b64(labels: np.ndarray, background: np.ndarray | None, size: int = 64) -> str:
    """A small axial PNG through the largest component's centre: labels filled, no outlines (a few kB)."""
    from PIL import Image

    comp = largest_component(labels)
    z = comp.centre[2] if comp else labels.shape[2] // 2
    bg = background if background is not None else np.zeros(labels.shape, dtype=np.float32)
    rgb = grey_rgb(view(bg, "axial", z), window(bg))
    lab = view(labels, "axial", z)
    for value, colour in LABEL_RGB.items():
        _blend(rgb, lab == value, colour, 0.6)
    pil = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")
    pil.thumbnail((size, size), Image.BILINEAR)
    pil = pil.quantize(colors=32)
    buf = _io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")
