"""Commands about models: train, model-card, model-summary, tune-threshold."""
from __future__ import annotations

from pathlib import Path

import click


def train_command(data: Path | None, samplesheet: Path | None, out: Path, config: str, epochs: int | None,
                  fold: int | None, folds: int, seed: int, resume: bool, device: str,
                  label_convention: str | None, precision: str, checkpointing: bool | None,
                  steps_per_epoch: int | None, modality_dropout: float = 0.0) -> int:
    """`gliocascade train`: cases from a folder or a samplesheet (exactly one)."""
    from ..configs import load_config
    from ..data import cases_from_folder, cases_from_samplesheet
    from ..errors import InputError
    from ..train import train

    if (data is None) == (samplesheet is None):
        raise InputError(None, "give exactly one of --data or --samplesheet")
    cfg = load_config(config)
    cases = (cases_from_folder(data, label_convention) if data is not None
             else cases_from_samplesheet(samplesheet, label_convention))
    train(cases, out, cfg, epochs=epochs, fold=fold, folds=folds, seed=seed, resume=resume, device=device,
          precision=precision, checkpointing=checkpointing, steps_per_epoch=steps_per_epoch,
          source=str(data or samplesheet), modality_dropout=modality_dropout)
    return 0


def model_card_command(model: Path) -> int:
    """`gliocascade model-card`: print the card of a model folder."""
    from ..model_card import card_lines, read_card

    for line in card_lines(read_card(model)):
        click.echo(line)
    return 0


def model_summary_command(config: str) -> int:
    """`gliocascade model-summary`: each row's output size for a 4x128^3 input and exact parameter counts."""
    import torch

    from ..configs import load_config
    from ..networks import build_cascade, layer_sizes, parameter_counts

    cfg = load_config(config)
    size = (128, 128, 128)
    click.echo(f"config: {cfg['name']}  input: {cfg['in_channels']}x{size[0]}x{size[1]}x{size[2]} (training mode)")
    click.echo(f"{'layer':<24} {'output size':>24}")
    for name, shape in layer_sizes(cfg, size, training=True):
        click.echo(f"{name:<24} {'x'.join(str(s) for s in shape):>24}")
    with torch.device("meta"):
        counts = parameter_counts(build_cascade(cfg))
    click.echo()
    click.echo(f"parameters stage 1:                   {counts['stage1']:>12,d}  ({counts['stage1']})")
    click.echo(f"parameters stage 2 (inference):       {counts['stage2_inference']:>12,d}  "
               f"({counts['stage2_inference']})")
    click.echo(f"parameters stage 2 (with decoder 2):  {counts['stage2_training']:>12,d}  ({counts['stage2_training']})")
    click.echo(f"parameters total at inference:        {counts['stage1'] + counts['stage2_inference']:>12,d}")
    click.echo(f"parameters total in training:         {counts['total_training']:>12,d}")
    return 0


def tune_threshold_command(pred: Path, gt: Path | None, models: tuple[Path, ...], pred_labels: str = "2019",
                           gt_labels: str = "2019", references: Path | None = None) -> int:
    """`gliocascade tune-threshold`: pick N on validation cases, write it to each model.json."""
    from ..threshold_tuning import tune_threshold

    tune_threshold(Path(pred), gt, [Path(m) for m in models], pred_labels, gt_labels, references)
    return 0
