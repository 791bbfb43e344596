"""Help a person can use: every option explains itself with its default, every command ends with an
example, and options that exclude or need each other say so."""
from __future__ import annotations

import click
import pytest

from gliocascade.cli import main

COMMANDS = sorted(main.commands)


def _options(name: str) -> list[click.Option]:
    return [p for p in main.commands[name].params if isinstance(p, click.Option) and not p.hidden]


def _has_default(opt: click.Option) -> bool:
    return opt.default is not None and not opt.is_flag and not opt.multiple and repr(opt.default) != "Sentinel.UNSET"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_has_help_and_shows_its_default(name):
    for opt in _options(name):
        assert opt.help and len(opt.help) > 8, f"{name} {opt.opts[0]}: no help text"
        if _has_default(opt):
            assert opt.show_default, f"{name} {opt.opts[0]}: default {opt.default!r} not shown"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_ends_with_an_example(name, cli):
    text = cli(name, "--help").output.rstrip()
    tail = text.split("Example:")[-1] if "Example:" in text else ""
    assert tail.strip().startswith(f"gliocascade {name}"), f"{name} --help does not end with an example"


def test_run_help_names_the_samplesheet_columns_and_the_schema(cli):
    text = " ".join(cli("run", "--help").output.split())
    for column in ("case_id", "t1,t1ce,t2,flair", "dicom_dir", "seg", "space", "label_convention", "brainmask"):
        assert column in text, column
    assert "schema_input.json" in text


@pytest.mark.parametrize("command,option,other", [
    ("predict", "--case", "--cases"), ("predict", "--cases", "--case"),
    ("postprocess", "--et-threshold", "--model"), ("postprocess", "--model", "--et-threshold"),
    ("tune-threshold", "--gt", "--references"), ("tune-threshold", "--references", "--gt"),
    ("train", "--data", "--samplesheet"), ("train", "--samplesheet", "--data"),
])
def test_options_that_exclude_or_override_each_other_say_so(command, option, other):
    opt = next(o for o in _options(command) if option in o.opts)
    assert other in opt.help, f"{command} {option}: help does not mention {other}"


def test_verbose_is_accepted_after_the_subcommand(cli):
    assert cli("model-summary", "--config", "tiny", "-v").exit_code == 0
    assert cli("-v", "model-summary", "--config", "tiny").exit_code == 0
