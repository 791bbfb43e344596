"""Commands that run the whole chain: run (a samplesheet or BIDS dataset) and demo."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from ..layout import REPORT_DIR

log = logging.getLogger("gliocascade.commands")


def run_command(samplesheet: Path | None, models: tuple[Path, ...], out: Path, workers: int = 1, tta: str | int = "8",
                precision: str = "auto", device: str = "auto", atlas: Path | None = None, label_convention: str = "2019",
                save_probabilities: bool = False, registration_backend: str = "simpleitk", affine: bool = False,
                n4: bool = False, atlas_via: str = "t1ce", allow_qc_failure: bool = False,
                input_skull_stripped: str = "auto", skull_strip: str = "atlas", bids: Path | None = None,
                layout: str = "default", no_dicom_seg: bool = False, deidentify_seg: bool = False) -> int:
    """`gliocascade run`: 0 all cases succeeded, 1 some failed (2 comes from InputError).

    ``bids``: a BIDS dataset instead of the samplesheet (exactly one of the two is given).

    Progress: a cohort bar on a terminal, timestamped log lines otherwise (``progress.py``).
    """
    from ..pipeline import run_pipeline
    from ..progress import cohort_progress, timestamped_lines

    timestamped_lines()
    if (samplesheet is None) == (bids is None):
        raise InputError(None, "give either --samplesheet CSV or --bids DIR (one of them)")
    rows = None
    if bids is not None:
        from ..bids_input import read_bids_dataset

        rows = read_bids_dataset(bids)
    results = run_pipeline(samplesheet, list(models), out, workers, int(tta), device, atlas, label_convention,
                           progress=cohort_progress, rows=rows, layout=layout,
                           bids_source=None if bids is None else Path(bids),
                           precision=precision,
                           save_probabilities=save_probabilities, registration_backend=registration_backend,
                           affine=affine, n4=n4, atlas_via=atlas_via, allow_qc_failure=allow_qc_failure,
                           input_skull_stripped=input_skull_stripped, skull_strip=skull_strip,
                           dicom_seg=not no_dicom_seg, deidentify_seg=deidentify_seg)
    failed = [r for r in results if not r.ok]
    for r in failed:
        log.error("failed case %s (%s): %s", r.case_id, r.failed_step, r.message)
    log.info("run: %d of %d case(s) succeeded; report in %s", len(results) - len(failed), len(results),
             Path(out) / REPORT_DIR)
    return 1 if failed else 0


def demo_command(out: Path, quick: bool = False, workers: int = 2) -> int:
    """`gliocascade demo` (see `demo.py`)."""
    from ..demo import run_demo

    return run_demo(Path(out), quick=quick, workers=workers)
