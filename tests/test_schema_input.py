"""The samplesheet JSON schema (shared with Nextflow) and `run`'s use of it.

Each rule of the DESIGN samplesheet has a sheet that breaks it; the schema must name the row and
column, `io.read_samplesheet` must reject the same sheets (the two front doors agree), and
`gliocascade run` must stop with exit 2 before writing anything.
"""
from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from gliocascade.io import SamplesheetError
from gliocascade.samplesheet import read_samplesheet
from gliocascade.samplesheet_schema import load_schema, read_rows, schema_errors, validate_samplesheet

HEADER = "case_id,t1,t1ce,t2,flair,seg,space,label_convention"
GOOD_ROW = "c1,a/t1.nii.gz,a/t1ce.nii.gz,a/t2.nii.gz,a/flair.nii.gz,a/seg.nii.gz,brats,2019"

# (name, csv text, expected row, expected column) -- each breaks exactly one rule.
BAD_SHEETS = [
    ("duplicate id", f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW}\n", 3, "case_id"),
    ("id with space", f"{HEADER}\nc 1,a,b,c,d,,,\n", 2, "case_id"),
    ("empty id", f"{HEADER}\n{GOOD_ROW}\n,a,b,c,d,,,\n", 3, "case_id"),
    ("bad space", f"{HEADER}\nc1,a,b,c,d,,mni,\n", 2, "space"),
    ("bad convention", f"{HEADER}\nc1,a,b,c,d,,,2021\n", 2, "label_convention"),
    ("three modalities", f"{HEADER}\nc1,a,b,c,,,,\n", 2, None),
    ("images and dicom", "case_id,t1,t1ce,t2,flair,dicom_dir\nc1,a,b,c,d,study\n", 2, None),
    ("dicom in brats space", "case_id,dicom_dir,space\nc1,study,brats\n", 2, "space"),
    ("unknown column", "case_id,t1,t1ce,t2,flair,age\nc1,a,b,c,d,40\n", 2, None),
    ("no case_id column", "t1,t1ce,t2,flair\na,b,c,d\n", 2, "case_id"),
    ("brainmask in a native row", "case_id,t1,t1ce,t2,flair,brainmask\nc1,a,b,c,d,m.nii.gz\n", 2, "space"),
    ("brainmask in an explicit native row", "case_id,t1,t1ce,t2,flair,space,brainmask\nc1,a,b,c,d,native,m.nii.gz\n",
     2, "space"),
    ("brainmask not NIfTI", "case_id,t1,t1ce,t2,flair,space,brainmask\nc1,a,b,c,d,brats,m.txt\n", 2, "brainmask"),
    # C1 and c1 would share one output folder on a case-insensitive file system (macOS, Windows)
    ("ids differing only in case", f"{HEADER}\n{GOOD_ROW.replace('c1,', 'C1,', 1)}\n{GOOD_ROW}\n", 3, "case_id"),
    ("id starting with a dot", f"{HEADER}\n.hidden,a,b,c,d,,,\n", 2, "case_id"),
]


def _sheet(tmp_path: Path, text: str, name: str = "samples.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_schema_is_valid_draft_2020_12():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "array" and schema["uniqueEntries"] == ["case_id"]
    assert schema["items"]["properties"]["case_id"]["meta"] == ["id"]


def test_good_sheets_pass(tmp_path):
    text = (f"{HEADER}\n{GOOD_ROW}\n"
            "c2,b/t1.nii,b/t1ce.nii,b/t2.nii,b/flair.nii,,,\n"   # defaults: native, 2019, no seg
            "c3,x,y,z,w,s.nii.gz,native,2023\n")
    assert schema_errors(read_rows(_sheet(tmp_path, text))) == []
    dicom = "case_id,dicom_dir,seg\nd1,study1,\nd2,study2,gt.nii.gz\n"
    assert schema_errors(read_rows(_sheet(tmp_path, dicom, "dicom.csv"))) == []


@pytest.mark.parametrize("name,text,row,column", BAD_SHEETS, ids=[b[0] for b in BAD_SHEETS])
def test_each_rule_names_row_and_column(tmp_path, name, text, row, column):
    path = _sheet(tmp_path, text)
    with pytest.raises(SamplesheetError) as info:
        validate_samplesheet(path)
    message = str(info.value)
    assert message.startswith(f"{path}: schema error: row {row}")
    if column:
        assert f"column {column}" in message


@pytest.mark.parametrize("name,text,row,column", BAD_SHEETS, ids=[b[0] for b in BAD_SHEETS])
def test_io_reader_rejects_the_same_sheets(tmp_path, name, text, row, column):
    """The schema and `io.read_samplesheet` state the same rules: both refuse each bad sheet."""
    with pytest.raises(SamplesheetError):
        read_samplesheet(_sheet(tmp_path, text))


def test_seg_must_be_nifti(tmp_path):
    errors = schema_errors(read_rows(_sheet(tmp_path, f"{HEADER}\nc1,a,b,c,d,seg.txt,,\n")))
    assert len(errors) == 1 and errors[0].startswith("row 2, column seg:")


def test_missing_files_are_not_schema_errors(tmp_path):
    """A missing file fails only its case at run time, so the schema must accept the sheet."""
    path = _sheet(tmp_path, f"{HEADER}\n{GOOD_ROW}\n")
    assert validate_samplesheet(path)[0]["case_id"] == "c1"
    rows = read_samplesheet(path)
    assert rows[0].problems  # the files do not exist: reported for the case only


def test_all_problems_listed_in_row_order(tmp_path):
    lines = [HEADER] + [f"c{i},a,b,c,d,,,\n".strip() for i in range(12)] + ["c11,a,b,c,d,,bad,"]
    errors = schema_errors(read_rows(_sheet(tmp_path, "\n".join(lines) + "\n")))
    assert [e.split(":")[0] for e in errors] == ["row 14, column case_id", "row 14, column space"]


def test_run_stops_on_schema_error_before_any_output(tmp_path, cli):
    sheet = _sheet(tmp_path, f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW}\n")
    out = tmp_path / "run_out"
    result = cli("run", "--samplesheet", sheet, "--model", tmp_path / "no_model", "--out", out)
    assert result.exit_code == 2
    assert "row 3, column case_id: duplicate case_id 'c1'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_run_stops_on_bad_model_before_any_output(tmp_path, cli):
    sheet = _sheet(tmp_path, f"{HEADER}\n{GOOD_ROW}\n")
    out = tmp_path / "run_out"
    result = cli("run", "--samplesheet", sheet, "--model", tmp_path / "no_model", "--out", out)
    assert result.exit_code == 2
    assert "no_model" in result.stderr
    assert not out.exists()
