"""NIfTI reading/writing that keeps geometry, atomic outputs, case discovery and samplesheets.

Every step reads and writes images through here, so that a bad file always gives the same
one-line error and a killed step never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import re
import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

import nibabel as nib
import numpy as np
import pandas as pd

from .errors import InputError
from .geometry import BRATS_AFFINE, BRATS_SHAPE, brats_affine  # noqa: F401  (the grid lives in geometry)
from .labels import READABLE
# MODALITIES is re-exported: readers of the samplesheet and of images take the roles from io.
from .layout import MODALITIES, REPORT_DIR, case_id_of_anchor, find_image, image_name  # noqa: F401

# Case ids become file and folder names: ASCII letters, digits, '-', '_', '.', never a leading dot
# (a hidden folder, and '.' or '..'). Ids differing only in case are refused by the samplesheet schema.
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
# Names the run's output tree uses for itself, so no case may take them.
RESERVED_CASE_IDS = (REPORT_DIR,)


# --------------------------------------------------------------------------- reading

def load_nifti(path: str | Path, ndim: int | None = 3) -> nib.Nifti1Image:
    """Load a NIfTI image fully (so truncation is caught here), checking dimensionality.

    A trailing singleton 4th axis (common in atlases) is squeezed away when ``ndim`` is 3.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "expected a NIfTI file, found a folder")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for non-NIfTI input
        raise InputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI file (read as {type(img).__name__})")
    try:
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise InputError(path, f"truncated or corrupt image data ({type(exc).__name__}: {exc})") from None
    if ndim == 3 and data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if ndim is not None and data.ndim != ndim:
        raise InputError(path, f"expected a {ndim}D image, got {data.ndim}D with shape {tuple(data.shape)}")
    hdr = img.header.copy()
    out = nib.Nifti1Image(data, img.affine, hdr)
    out.set_qform(img.affine, code=int(img.header["qform_code"]) or 1)
    out.set_sform(img.affine, code=int(img.header["sform_code"]) or 1)
    return out


def read_image(path: str | Path, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(array as float32, affine) of a 3D image; refuses NaN/Inf when ``finite``."""
    img = load_nifti(path)
    arr = np.asarray(img.dataobj, dtype=np.float32)
    if finite and not np.all(np.isfinite(arr)):
        raise InputError(path, "image contains NaN or infinite values")
    return arr, img.affine.copy()


def read_labels(path: str | Path, convention: str | int = "2019") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 label map validated against the convention, affine)."""
    from .labels import validate_labels

    img = load_nifti(path)
    return validate_labels(np.asanyarray(img.dataobj), convention, path), img.affine.copy()


def same_grid(affine_a: np.ndarray, shape_a: tuple, affine_b: np.ndarray, shape_b: tuple,
              tol_mm: float = 1e-3) -> bool:
    """True when two images share shape and affine (within ``tol_mm``)."""
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=tol_mm, rtol=0)


def _spacing_text(affine: np.ndarray) -> str:
    return "x".join(f"{v:.3g}" for v in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def _codes_text(affine: np.ndarray) -> str:
    return "".join(c or "?" for c in nib.aff2axcodes(affine))


def grid_difference(shape: tuple, affine: np.ndarray, ref_shape: tuple, ref_affine: np.ndarray,
                    ref_name: str) -> str:
    """What differs between a grid and a reference grid, in words a user can act on.

    Equal shapes hide the difference in the affine: another patient's image on a grid of the
    same size differs in orientation (axis codes) or position, so that is what is said.
    """
    shape, ref_shape = tuple(int(s) for s in shape), tuple(int(s) for s in ref_shape)
    size, ref_size = _spacing_text(affine), _spacing_text(ref_affine)
    if shape != ref_shape or size != ref_size:
        return f"grid {shape} at {size} mm differs from {ref_name} {ref_shape} at {ref_size} mm"
    codes, ref_codes = _codes_text(affine), _codes_text(ref_affine)
    if codes != ref_codes:
        return (f"grid {shape} in {codes} orientation differs from {ref_name} in {ref_codes} (same shape: "
                "another exam's or another patient's image?)")
    shift = float(np.linalg.norm(np.asarray(affine)[:3, 3] - np.asarray(ref_affine)[:3, 3]))
    how = f"origin {shift:.3g} mm away" if shift > 1e-3 else "axes rotated"
    return f"grid {shape}: affine differs from {ref_name} ({how}; same shape, voxel size and orientation {codes})"


def check_same_grid(ref_path: str | Path, ref: tuple[np.ndarray, np.ndarray],
                    other_path: str | Path, other: tuple[np.ndarray, np.ndarray]) -> None:
    """Raise an InputError naming ``other_path`` when (array, affine) pairs are on different grids."""
    (a, aff_a), (b, aff_b) = ref, other
    if not same_grid(aff_a, a.shape, aff_b, b.shape):
        raise InputError(other_path, grid_difference(b.shape, aff_b, a.shape, aff_a, str(ref_path)))


def check_one_grid(images: dict[str, Path], grids: dict[str, tuple[tuple, np.ndarray]]) -> None:
    """Refuse modalities on different grids, naming the odd one out (the file whose grid differs
    from the majority's), or both files when there is no majority."""
    groups: list[list[str]] = []
    for mod, (shape, affine) in grids.items():
        group = next((g for g in groups if same_grid(affine, shape, grids[g[0]][1], grids[g[0]][0])), None)
        if group is None:
            groups.append([mod])
        else:
            group.append(mod)
    if len(groups) == 1:
        return
    groups.sort(key=len, reverse=True)
    major, odd = groups[0], groups[1][0]
    if len(major) > len(groups[1]):
        ref_name = f"the other modalities ({', '.join(major)})"
    else:  # no majority: both files are named, neither is blamed
        ref_name = str(images[major[0]])
    shape, affine = grids[odd]
    raise InputError(images[odd], grid_difference(shape, affine, *grids[major[0]], ref_name))


def check_distinct_files(images: dict[str, Path | None]) -> None:
    """Refuse one file given for two modalities (same path or same bytes): they cannot be one exam."""
    by_path: dict[Path, list[str]] = {}
    for mod in MODALITIES:
        p = images.get(mod)
        if p is not None and Path(p).is_file():
            by_path.setdefault(Path(p).resolve(), []).append(mod)
    for path, mods in by_path.items():
        if len(mods) > 1:
            raise InputError(images[mods[0]], f"the same file is given for {', '.join(mods)}; each modality "
                                              "needs its own image")
    first_by_content: dict[tuple[int, str], str] = {}
    sizes = [p.stat().st_size for p in by_path]
    for path, (mod,) in by_path.items():
        if sizes.count(path.stat().st_size) < 2:
            continue  # a unique size cannot repeat another file's content
        from .hashing import sha256_file

        key = (path.stat().st_size, sha256_file(path))
        if key in first_by_content:
            other = first_by_content[key]
            raise InputError(images[mod], f"same content as {images[other]} ({other}); each modality needs "
                                          "its own image")
        first_by_content[key] = mod


# Brain outlines (non-zero voxels) of the modalities of one skull-stripped exam coincide: Dice >= 0.999
# on the two real BraTS-space cases, our preprocessed TCGA exam and every phantom. Another patient's
# image does not: 0.886-0.944 between phantoms of different seeds, 0.89 between the two real cases.
# Below this Dice the modality is refused (images that are not skull-stripped are non-zero nearly
# everywhere, so they always pass: the check cannot tell exams apart there).
OUTLINE_DICE_MIN = 0.97


def anchor_modality(present: Collection[str]) -> str:
    """The modality a case's grid and outline are judged against: T1Gd, else the first present."""
    return "t1ce" if "t1ce" in present else next(m for m in MODALITIES if m in present)


def check_one_exam(images: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    """Refuse a modality that is identical to another or whose brain outline is not T1Gd's
    (another patient's image, or one co-registered to another exam); absent modalities are skipped."""
    from .overlap import dice  # the one Dice

    mods = [m for m in MODALITIES if m in arrays]
    for i, a in enumerate(mods):
        for b in mods[i + 1:]:
            if np.array_equal(arrays[a], arrays[b]):
                raise InputError(images[b], f"same voxels as {images[a]} ({a}); each modality needs its own image")
    anchor = anchor_modality(arrays)
    ref = arrays[anchor] != 0
    for mod in mods:
        if mod == anchor:
            continue
        outline = arrays[mod] != 0
        score = dice(ref, outline)
        if score < OUTLINE_DICE_MIN:
            raise InputError(images[mod], f"brain outline (non-zero voxels) overlaps T1Gd's with Dice {score:.3f} "
                                          f"< {OUTLINE_DICE_MIN}: not the same exam as {images['t1ce']} "
                                          "(another patient's image, or a failed co-registration?)")


def read_modalities(images: dict[str, Path], case_id: str, brainmask: str | Path | None = None,
                    optional: Collection[str] = ()
                    ) -> tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray]]:
    """The four modalities of a case stacked (4, X, Y, Z) float32, its brain mask (bool) or None,
    and the anchor's (T1Gd's, when present) (array, affine); every file is checked to be finite, not
    all zero, on one grid, and of one exam (different images whose brain outlines agree).

    A modality in ``optional`` may be absent: its channel is all zero, as z-scoring leaves an absent
    one (a model trained without it, or with modality dropout). Any other absent one is an error.
    The one reader of a case's images, for training and inference alike.
    """
    missing = [m for m in MODALITIES if images.get(m) is None and m not in optional]
    if missing:
        where = Path(images["t1ce"]).parent / f"{case_id}_{missing[0]}.nii.gz" if images.get("t1ce") else None
        raise InputError(where, f"modality {', '.join(missing)} missing for case {case_id}")
    present = [m for m in MODALITIES if images.get(m) is not None]
    if not present:
        raise InputError(None, f"case {case_id} has no image")
    check_distinct_files(images)
    read = {mod: read_image(images[mod]) for mod in present}
    for mod in present:
        if not read[mod][0].any():
            raise InputError(images[mod], "image is all zero (no brain to segment)")
    check_one_grid(images, {mod: (arr.shape, aff) for mod, (arr, aff) in read.items()})
    check_one_exam(images, {mod: arr for mod, (arr, _) in read.items()})
    anchor = anchor_modality(present)
    ref_path, ref = Path(images[anchor]), read[anchor]
    mask = None
    if brainmask is not None:
        m = read_image(brainmask)
        check_same_grid(ref_path, ref, brainmask, m)
        mask = m[0] > 0
    zeros = np.zeros(ref[0].shape, dtype=np.float32)
    return np.stack([read[mod][0] if mod in read else zeros for mod in MODALITIES]), mask, ref


def read_json_object(path: str | Path, what: str) -> dict:
    """A JSON file that must hold an object; unreadable or other JSON is an InputError naming ``what``."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(path, f"{what} must be a JSON object")
    return data


# --------------------------------------------------------------------------- writing

def error_naming(exc: OSError, path: str | Path) -> OSError:
    """The same error, naming ``path`` when it names no file (gzip and zlib write errors do not)."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_paths(paths: list[str | Path]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``paths``; rename them all into place, in order, only
    if the block succeeds (so a step's outputs appear together or not at all: the last one named
    is the step's completion marker). An I/O error names the output it was writing.
    """
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in finals:
            path.parent.mkdir(parents=True, exist_ok=True)
            suffix = "".join(path.suffixes) or ".tmp"
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".part{suffix}",
                                       dir=path.parent)
            os.close(fd)
            temps.append(Path(tmp))
        try:
            yield list(temps)
        except OSError as exc:
            index = next((i for i, t in enumerate(temps) if exc.filename in (str(t), t)), None)
            if index is not None:  # name the output, not its temporary file
                raise type(exc)(exc.errno, exc.strerror or str(exc), str(finals[index])) from None
            raise error_naming(exc, finals[-1]) from None
        umask = os.umask(0)
        os.umask(umask)
        for tmp, path in zip(temps, finals):
            os.chmod(tmp, 0o666 & ~umask)
        for tmp, path in zip(temps, finals):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def write_image(path: str | Path, array: np.ndarray, affine: np.ndarray,
                header: nib.Nifti1Header | None = None, dtype: np.dtype | type | None = None) -> Path:
    """Write a NIfTI atomically with qform and sform both set to ``affine`` (code 1, scanner)."""
    if not str(path).endswith((".nii", ".nii.gz")):
        raise InputError(path, "output image must end in .nii or .nii.gz")
    if Path(path).is_dir():
        raise InputError(path, "output image path is an existing folder")
    arr = np.asarray(array if dtype is None else np.asarray(array).astype(dtype))
    img = nib.Nifti1Image(arr, affine, header.copy() if header is not None else None)
    img.header.set_data_dtype(arr.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def write_labels(path: str | Path, labels: np.ndarray, affine: np.ndarray) -> Path:
    """Write a label map as uint8."""
    return write_image(path, labels, affine, dtype=np.uint8)


def check_writable_folder(path: str | Path) -> None:
    """Refuse an output folder that cannot be written before any work starts, not after it.

    A folder that does not exist yet is judged by the nearest existing folder above it (where it
    would be created). The check writes and removes a probe file: permission bits say nothing on a
    read-only mount, to root, or under ACLs, and a real write is the only reliable answer.
    """
    folder = Path(path)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(folder, "is not a folder: outputs cannot be written under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gliocascade-write-check-", dir=folder)
    except OSError as exc:
        raise InputError(folder, f"output folder is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


# --------------------------------------------------------------------------- case discovery


def read_csv_rows(path: Path, columns: tuple[str, ...], what: str) -> list[dict[str, str]]:
    """The rows of a CSV that must have exactly ``columns``; a wrong header or an unreadable file
    is an InputError naming ``what`` the file was meant to be."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or tuple(reader.fieldnames) != tuple(columns):
                raise InputError(path, f"a {what} needs the columns {','.join(columns)}")
            return list(reader)
    except OSError as exc:
        raise InputError(path, f"unreadable {what} ({exc.strerror or exc})") from None

@dataclass
class Case:
    """One case: its id, the paths of its modalities, its optional ground truth and brain mask
    (the brain z-scoring uses, ``data.brain_of``, when given)."""

    case_id: str
    images: dict[str, Path]
    seg: Path | None = None
    label_convention: str = "2019"
    space: str = "brats"
    brainmask: Path | None = None


def case_id_from_files(folder: Path) -> str:
    """The case id from the T1Gd file's prefix (either naming of the case layout), not the folder."""
    folder = Path(folder)
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        cid = case_id_of_anchor(p.name)
        if cid is not None:
            return cid
    raise InputError(folder, f"no T1Gd image ({image_name('<id>', 't1ce')} or {image_name('<id>', 't1ce', '2023')}) "
                             "found in case folder")


def discover_case(folder: str | Path, case_id: str | None = None, require_all: bool = True) -> Case:
    """Find a BraTS-layout case in ``folder`` (2019 or 2023 names, ``layout.SUFFIXES``).

    The label convention of ``seg`` follows the naming: 2023 names imply ET = 3.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "case folder not found")
    cid = case_id or case_id_from_files(folder)
    images: dict[str, Path] = {}
    is_2023 = False
    for mod in MODALITIES:
        p = find_image(folder, cid, mod, ("2019",))
        if p is None:
            p = find_image(folder, cid, mod, ("2023",))
            is_2023 = is_2023 or p is not None
        if p is None:
            if require_all:
                raise InputError(folder / image_name(cid, mod), f"modality {mod} missing for case {cid}")
            continue
        images[mod] = p
    seg = find_image(folder, cid, "seg")
    # A preprocessed case carries its brain mask: z-scoring uses it in training and prediction alike.
    brainmask = find_image(folder, cid, "brainmask")
    return Case(cid, images, seg, "2023" if is_2023 else "2019", "brats", brainmask)


def case_folders(root: str | Path) -> list[Path]:
    """Folders directly below ``root`` that hold NIfTI images (sorted): the candidate cases."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "folder not found")
    folders = [p for p in sorted(root.iterdir())
               if p.is_dir() and any(f.name.endswith((".nii", ".nii.gz")) for f in p.iterdir())]
    if not folders:
        raise InputError(root, "no case folders with NIfTI images found")
    return folders


def discover_cases(root: str | Path) -> list[Case]:
    """Every case below ``root``; an incomplete case folder is an error naming the missing file."""
    return [discover_case(folder) for folder in case_folders(root)]


# --------------------------------------------------------------------------- samplesheets

_READABLE_TEXT = ", ".join(READABLE[:-1]) + " or " + READABLE[-1]


class SamplesheetError(InputError):
    """A schema error in the samplesheet: stops the whole run before it starts."""


@dataclass
class SampleRow:
    """One validated samplesheet row (built by ``samplesheet.read_samplesheet`` or
    ``bids_input``); ``problems`` lists per-case file problems (missing files).

    ``brainmask`` (space=brats rows only) is the row's brain: both doors z-score over it. A
    ``<id>_brainmask`` file lying beside the images counts only when the sheet names it.
    """

    case_id: str
    images: dict[str, Path]
    dicom_dir: Path | None
    seg: Path | None
    space: str
    label_convention: str
    problems: list[str] = field(default_factory=list)
    brainmask: Path | None = None

    def to_case(self) -> Case:
        return Case(self.case_id, dict(self.images), self.seg, self.label_convention, self.space, self.brainmask)


def _cell(row: pd.Series, col: str) -> str:
    if col not in row.index:
        return ""
    v = row[col]
    return "" if pd.isna(v) else str(v).strip()


def read_samplesheet_table(path: str | Path) -> pd.DataFrame:
    """The samplesheet as a table of stripped strings (a UTF-8 byte-order mark is ignored)."""
    path = Path(path)
    if path.is_dir():
        raise SamplesheetError(path, "is a folder, not a samplesheet CSV file")
    if not path.is_file():
        raise SamplesheetError(path, "samplesheet not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except Exception as exc:
        raise SamplesheetError(path, f"not a readable CSV ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_references(path: str | Path) -> dict[str, tuple[Path, str]]:
    """case_id -> (seg, label convention) of a CSV with the samplesheet's columns ``case_id``,
    ``seg`` and optional ``label_convention`` (a whole samplesheet will do; other columns are ignored).

    tune-threshold reads its references from here, so each reference is read in its own row's
    convention in both front doors. Relative paths resolve against the CSV's folder.
    """
    path = Path(path)
    df = read_samplesheet_table(path)
    for col in ("case_id", "seg"):
        if col not in df.columns:
            raise SamplesheetError(path, f"missing column '{col}'")
    out: dict[str, tuple[Path, str]] = {}
    for i, row in df.iterrows():
        where = f"row {int(i) + 2}"
        cid, seg = _cell(row, "case_id"), _cell(row, "seg")
        conv = _cell(row, "label_convention") or "2019"
        if not cid or not seg:
            raise SamplesheetError(path, f"{where}: case_id and seg are needed")
        if conv not in READABLE:
            raise SamplesheetError(path, f"{where}, column label_convention: {conv!r} is not {_READABLE_TEXT}")
        if cid in out:
            raise SamplesheetError(path, f"{where}, column case_id: duplicate case_id {cid!r}")
        p = Path(seg).expanduser()
        out[cid] = (p if p.is_absolute() else path.parent / p, conv)
    return out
