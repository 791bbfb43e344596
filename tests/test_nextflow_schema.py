"""The parameter and samplesheet schemas are valid draft 2020-12 and agree with the pipeline.

nextflow_schema.json must declare exactly the params of nextflow.config with the same defaults;
assets/schema_input.json (a relative link to the package's copy, which `run` uses) must accept
the test samplesheet and reject the rows that `gliocascade run` rejects.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import jsonschema
import pytest

from nfcheck import ROOT, load_json, params_defaults

SCHEMA = ROOT / "nextflow_schema.json"
INPUT_SCHEMA = ROOT / "assets" / "schema_input.json"
SAMPLESHEET = ROOT / "tests" / "samplesheet_test.csv"


def _properties() -> dict[str, dict]:
    schema = load_json(SCHEMA)
    props: dict[str, dict] = {}
    for group in schema["$defs"].values():
        props.update(group["properties"])
    return props


def _typed(values: dict[str, str | None]) -> dict:
    """Config strings as the JSON types the schema declares (nulls left out, as Nextflow does)."""
    props = _properties()
    out = {}
    for k, v in values.items():
        if v is None:
            continue
        kind = props.get(k, {}).get("type")
        out[k] = int(v) if kind == "integer" else {"true": True, "false": False}.get(v, v) if kind == "boolean" else v
    return out


def _validator(path: Path) -> jsonschema.Draft202012Validator:
    schema = load_json(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_parameter_schema_is_valid_draft_2020_12():
    schema = load_json(SCHEMA)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    _validator(SCHEMA)


def test_schema_declares_exactly_the_config_params_with_their_defaults():
    config = params_defaults()
    props = _properties()
    assert set(config) == set(props)
    for name, value in _typed(config).items():
        if "default" in props[name]:
            assert props[name]["default"] == value, name


def test_default_and_test_profile_params_validate():
    validator = _validator(SCHEMA)
    defaults = _typed(params_defaults())
    validator.validate(defaults)
    text = (ROOT / "nextflow.config").read_text()
    block = text[text.index("    test {"):text.index("    local {")]
    overrides = {m.group(1): m.group(2).strip("'\"") for m in re.finditer(r"params\.(\w+)\s*=\s*(.+?)\s*$", block, re.M)}
    assert overrides, "the test profile sets no params"
    validator.validate({**defaults, **_typed(overrides)})


@pytest.mark.parametrize("bad", [{"tta": 3}, {"mode": "predict"}, {"device": "tpu"}, {"seeds": "0;1"},
                                 {"folds": 1}])
def test_parameter_schema_rejects_bad_values(bad):
    validator = _validator(SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**_typed(params_defaults()), **bad})


def test_input_schema_is_a_relative_link_to_the_package_copy():
    assert INPUT_SCHEMA.is_symlink()
    target = os.readlink(INPUT_SCHEMA)
    assert not os.path.isabs(target)
    assert INPUT_SCHEMA.resolve() == (ROOT / "python" / "gliocascade" / "assets" / "schema_input.json").resolve()
    params = _properties()["input"]
    assert params["schema"] == "assets/schema_input.json"


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def test_test_samplesheet_validates():
    validator = _validator(INPUT_SCHEMA)
    rows = _rows(SAMPLESHEET)
    assert len(rows) == 3
    validator.validate(rows)


BAD_ROWS = {
    "dicom_and_images": "case_id,t1,t1ce,t2,flair,dicom_dir\nc1,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz,dcm\n",
    "missing_modality": "case_id,t1,t1ce,t2,flair\nc1,a.nii.gz,,c.nii.gz,d.nii.gz\n",
    "bad_space": "case_id,t1,t1ce,t2,flair,space\nc1,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz,mni\n",
    "dicom_in_brats_space": "case_id,dicom_dir,space\nc1,dcm,brats\n",
    "bad_case_id": "case_id,t1,t1ce,t2,flair\nc 1,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz\n",
    "bad_convention": "case_id,t1,t1ce,t2,flair,label_convention\nc1,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz,2021\n",
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_schema_and_run_reject_the_same_rows(name, tmp_path):
    """The pipeline's schema and the samplesheet check of `gliocascade run` agree on bad rows."""
    from gliocascade.errors import InputError
    from gliocascade.pipeline import load_samplesheet

    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text(BAD_ROWS[name])
    with pytest.raises(jsonschema.ValidationError):
        _validator(INPUT_SCHEMA).validate(_rows(sheet))
    with pytest.raises(InputError):
        load_samplesheet(sheet)


def test_duplicate_case_ids_are_rejected_by_nf_schema_rule_and_run(tmp_path):
    """nf-schema's uniqueEntries (not a JSON Schema keyword) is declared, and `run` applies it."""
    from gliocascade.errors import InputError
    from gliocascade.pipeline import load_samplesheet

    assert load_json(INPUT_SCHEMA)["uniqueEntries"] == ["case_id"]
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("case_id,t1,t1ce,t2,flair\nc1,a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz\n"
                     "c1,e.nii.gz,f.nii.gz,g.nii.gz,h.nii.gz\n")
    with pytest.raises(InputError, match="c1"):
        load_samplesheet(sheet)


def test_run_accepts_the_test_samplesheet():
    from gliocascade.pipeline import load_samplesheet

    rows = load_samplesheet(SAMPLESHEET)
    assert [r.case_id for r in rows] == ["patient01", "BraTS19_2013_2_1", "patient03"]
    assert [r.space for r in rows] == ["native", "brats", "native"]
    assert rows[2].dicom_dir == SAMPLESHEET.parent / "patient03" / "dicom"
