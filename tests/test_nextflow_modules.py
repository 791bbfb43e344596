"""Every Nextflow module is a thin, correct wrapper of one `gliocascade` command.

The contract test substitutes ext.args from conf/modules.config and sample values for the Groovy
variables into each module's command line and parses it with the click CLI (without running it);
the mutation control shows the same check fails when an option drifts. The stub checks run each
`stub:` block and look for every output pattern the process declares.
"""
from __future__ import annotations

import re

import click
import pytest

from nfcheck import MODULES, ROOT, check_contract, check_stub, modules, modules_config, parse_module

MODULE_PATHS = modules()
IDS = [p.parent.name for p in MODULE_PATHS]
EXPECTED = {"phantom", "convert", "preprocess", "train", "predict", "postprocess", "tune_threshold",
            "evaluate", "report"}


def test_one_module_per_pipeline_step():
    assert set(IDS) == EXPECTED


@pytest.mark.parametrize("path", MODULE_PATHS, ids=IDS)
def test_module_follows_the_process_conventions(path):
    module = parse_module(path)
    assert module.name == path.parent.name.upper()
    assert module.directives.get("label", "").strip("'").startswith("process_")
    assert "container" not in module.directives, "the image is set once, by process.container in nextflow.config"
    assert "def args = task.ext.args ?: ''" in path.read_text()
    assert re.search(r"^    when:\n    task\.ext\.when == null \|\| task\.ext\.when\n", path.read_text(), re.M)
    assert "${args}" in module.script, "the command must take task.ext.args"
    assert "topic: versions" in path.read_text()
    assert module.stub.strip(), "a stub: block is required"


@pytest.mark.parametrize("path", MODULE_PATHS, ids=IDS)
def test_module_command_parses_against_the_cli(path):
    argv = check_contract(path)
    assert argv[1] == path.parent.name.replace("_", "-")


@pytest.mark.parametrize("path", MODULE_PATHS, ids=IDS)
@pytest.mark.parametrize("profile", ["test", "gpu"])
def test_module_command_parses_with_profile_params(path, profile):
    """Profiles change ext.args through params (test: tiny training, CPU; gpu: --device cuda)."""
    argv = check_contract(path, profile=profile)
    if path.parent.name == "train" and profile == "test":
        assert argv[argv.index("--epochs") + 1] == "2" and argv[argv.index("--config") + 1] == "tiny"
    if path.parent.name == "predict" and profile == "gpu":
        assert argv[argv.index("--device") + 1] == "cuda"


def test_convert_with_series_folders_parses_too(monkeypatch):
    """CONVERT takes a study folder, or one series folder per modality (its other branch)."""
    import nfcheck

    series = "--t1 series/t1/s2 --t1ce series/t1ce/s5 --t2 series/t2/s3 --flair series/flair/s4"
    monkeypatch.setitem(nfcheck.SAMPLE_VARS, "input_args", series)
    argv = check_contract(MODULES / "convert" / "main.nf")
    assert "--dicom" not in argv and argv[argv.index("--t1ce") + 1] == "series/t1ce/s5"
    text = (MODULES / "convert" / "main.nf").read_text()
    assert f'"{series.replace("series/t1/s2", "${t1}").replace("series/t1ce/s5", "${t1ce}").replace("series/t2/s3", "${t2}").replace("series/flair/s4", "${flair}")}"' in text


def test_aliased_process_options_parse_too():
    """PREDICT runs again as PREDICT_VALIDATION in train mode, with its own ext.args."""
    assert "PREDICT_VALIDATION" in modules_config()
    argv = check_contract(MODULES / "predict" / "main.nf", "PREDICT_VALIDATION")
    assert "--tta" in argv


def test_every_ext_args_belongs_to_a_module():
    names = {parse_module(p).name for p in MODULE_PATHS} | {"PREDICT_VALIDATION"}
    assert set(modules_config()) <= names


@pytest.mark.parametrize("old,new", [("--case-id", "--case-name"), ("--out", "--output")])
def test_contract_check_fails_when_an_option_drifts(tmp_path, old, new):
    """Mutation control: a copy of a module with one option renamed must fail the contract test."""
    src = MODULES / "evaluate" / "main.nf"
    copy = tmp_path / "evaluate" / "main.nf"
    copy.parent.mkdir()
    text = src.read_text()
    script_start = text.index("script:")
    mutated = text[:script_start] + text[script_start:].replace(f" {old} ", f" {new} ", 1)
    assert mutated != text
    copy.write_text(mutated)
    with pytest.raises(click.UsageError):
        check_contract(copy, "EVALUATE")


def test_contract_check_fails_on_a_bad_choice_in_ext_args(tmp_path, monkeypatch):
    """Mutation control on conf/modules.config: an invalid --tta value in ext.args must fail."""
    import nfcheck

    config = tmp_path / "modules.config"
    text = (ROOT / "conf" / "modules.config").read_text()
    config.write_text(text.replace('"--tta ${params.tta}', '"--tta 3', 1))
    original = nfcheck.modules_config
    monkeypatch.setattr(nfcheck, "modules_config", lambda config=config: original(config))
    with pytest.raises(click.BadParameter):
        check_contract(MODULES / "predict" / "main.nf")


@pytest.mark.parametrize("path", MODULE_PATHS, ids=IDS)
def test_stub_creates_every_declared_output(path, tmp_path):
    module = parse_module(path)
    assert module.outputs, "the process declares no path outputs"
    missing = check_stub(path, tmp_path)
    assert not missing, f"stub of {module.name} does not create {missing}"


def test_stub_check_notices_a_missing_output(tmp_path):
    """Control: a stub that forgets one output is caught."""
    src = MODULES / "postprocess" / "main.nf"
    copy = tmp_path / "mod" / "main.nf"
    copy.parent.mkdir()
    text = src.read_text()
    stub_at = text.index("stub:")
    copy.write_text(text[:stub_at] + text[stub_at:].replace(" ${prefix}_seg_native.nii.gz", "", 1))
    work = tmp_path / "work"
    work.mkdir()
    assert check_stub(copy, work) == ["case01_seg_native.nii.gz"]


@pytest.mark.parametrize("path", MODULE_PATHS, ids=IDS)
def test_module_has_an_nf_test_spec_with_a_stub_test(path):
    spec = path.parent / "tests" / "main.nf.test"
    assert spec.is_file(), f"missing {spec.relative_to(ROOT)}"
    text = spec.read_text()
    name = parse_module(path).name
    assert re.search(rf'nextflow_process\s*\{{.*?script\s+"\.\./main\.nf".*?process\s+"{name}"', text, re.S)
    tests = re.findall(r'^\s*test\("([^"]+)"\)\s*\{(.*?)^\s{4}\}', text, re.S | re.M)
    assert any('options "-stub"' in body for _, body in tests), "no -stub test"
    for _, body in tests:
        assert "assert process.success" in body or "process.success" in body


def test_pipeline_nf_test_uses_the_test_profile():
    spec = ROOT / "tests" / "default.nf.test"
    text = spec.read_text()
    assert 'script "../main.nf"' in text and "nextflow_pipeline" in text
    assert 'options "-stub"' in text
    config = (ROOT / "nf-test.config").read_text()
    assert re.search(r'profile\s+"test"', config)


def test_every_process_label_is_configured():
    base = (ROOT / "conf" / "base.config").read_text()
    configured = set(re.findall(r"withLabel: '(\w+)'", base))
    used = {parse_module(p).directives["label"].strip("'") for p in MODULE_PATHS}
    assert used <= configured
    gpu = base[base.index("withLabel: 'process_gpu'"):]
    gpu = gpu[: gpu.index("withLabel:", 10)]
    assert re.search(r"accelerator\s*=\s*1\n", gpu)
    assert "task.attempt" in base and "maxRetries" in base
    for code in ("130..145", "104", "175"):
        assert code in base


def test_gpu_steps_are_the_network_steps():
    gpu = {parse_module(p).name for p in MODULE_PATHS if "process_gpu" in parse_module(p).directives["label"]}
    assert gpu == {"TRAIN", "PREDICT"}


def test_profiles_exist():
    text = (ROOT / "nextflow.config").read_text()
    block = text[text.index("profiles {"):]
    for profile in ("test", "local", "slurm", "docker", "singularity", "apptainer", "gpu"):
        assert re.search(rf"^    {profile} \{{", block, re.M), profile
    assert "--gres=gpu:1" in block and "--gpus all" in block and "--nv" in block
    assert "resourceLimits" in block


def test_versions_topic_is_collected_by_the_pipeline():
    """Each module emits (process, tool, version) on the `versions` topic; main.nf writes them out."""
    main = (ROOT / "main.nf").read_text()
    assert "channel.topic('versions')" in main and "software_versions.yml" in main
    for path in MODULE_PATHS:
        text = path.read_text()
        assert re.search(r'tuple val\("\$\{task\.process\}"\), val\("gliocascade"\), '
                         r'eval\("gliocascade --version[^"]*"\), topic: versions', text), path
