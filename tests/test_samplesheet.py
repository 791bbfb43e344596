"""Samplesheets: schema errors stop with row and column named; file problems stay with their case."""
from __future__ import annotations

import pytest

from gliocascade.io import SamplesheetError
from gliocascade.samplesheet import read_samplesheet

HEADER = "case_id,t1,t1ce,t2,flair"


def _images(folder, cid):
    """Create the four (empty) image files of a case; returns their names relative to ``folder``."""
    sub = folder / "img"
    sub.mkdir(exist_ok=True)
    names = []
    for m in ("t1", "t1ce", "t2", "flair"):
        (sub / f"{cid}_{m}.nii.gz").write_bytes(b"")
        names.append(f"img/{cid}_{m}.nii.gz")
    return names


def _sheet(folder, lines):
    path = folder / "samples.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relative_paths_resolve_against_the_samplesheet_folder(tmp_path, monkeypatch):
    sheet_dir = tmp_path / "project"
    sheet_dir.mkdir()
    path = _sheet(sheet_dir, [HEADER + ",seg", "p1," + ",".join(_images(sheet_dir, "p1")) + ",img/p1_t1.nii.gz"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (row,) = read_samplesheet(path)
    assert row.images["t1ce"] == sheet_dir / "img" / "p1_t1ce.nii.gz"
    assert row.seg == sheet_dir / "img" / "p1_t1.nii.gz"
    assert row.problems == []
    assert (row.space, row.label_convention) == ("native", "2019")


def test_absolute_paths_are_kept(tmp_path):
    names = [str(tmp_path / n) for n in _images(tmp_path, "p1")]
    (row,) = read_samplesheet(_sheet(tmp_path, [HEADER, "p1," + ",".join(names)]))
    assert row.images["flair"] == tmp_path / "img" / "p1_flair.nii.gz"


def test_a_missing_file_is_reported_for_its_case_only(tmp_path):
    ok = _images(tmp_path, "p1")
    bad = _images(tmp_path, "p2")
    (tmp_path / bad[2]).unlink()
    rows = read_samplesheet(_sheet(tmp_path, [HEADER, "p1," + ",".join(ok), "p2," + ",".join(bad)]))
    assert [r.case_id for r in rows] == ["p1", "p2"]
    assert rows[0].problems == []
    assert len(rows[1].problems) == 1
    assert "p2_t2.nii.gz" in rows[1].problems[0] and "t2 file not found" in rows[1].problems[0]


def test_space_and_label_convention_columns(tmp_path):
    a, b = _images(tmp_path, "p1"), _images(tmp_path, "p2")
    rows = read_samplesheet(_sheet(tmp_path, [HEADER + ",space,label_convention",
                                              "p1," + ",".join(a) + ",brats,2023", "p2," + ",".join(b) + ",,"]))
    assert (rows[0].space, rows[0].label_convention) == ("brats", "2023")
    assert (rows[1].space, rows[1].label_convention) == ("native", "2019")
    assert rows[0].to_case().space == "brats"


def test_label_convention_2024_is_read_and_unknown_ones_are_refused(tmp_path):
    a, b = _images(tmp_path, "p1"), _images(tmp_path, "p2")
    rows = read_samplesheet(_sheet(tmp_path, [HEADER + ",label_convention", "p1," + ",".join(a) + ",2024"]))
    assert rows[0].label_convention == "2024"
    with pytest.raises(SamplesheetError, match=r"row 2, column label_convention: '2022' is not 2015, 2019, 2023 or 2024"):
        read_samplesheet(_sheet(tmp_path, [HEADER + ",label_convention", "p2," + ",".join(b) + ",2022"]))


def test_dicom_dir_rows(tmp_path):
    (tmp_path / "study1").mkdir()
    rows = read_samplesheet(_sheet(tmp_path, ["case_id,dicom_dir", "p1,study1", "p2,study2"]))
    assert rows[0].dicom_dir == tmp_path / "study1" and rows[0].problems == [] and rows[0].images == {}
    assert "DICOM folder not found" in rows[1].problems[0]


@pytest.mark.parametrize("lines,where", [
    (["case_id,t1,t1ce,t2,flair", "p1,a,b,c,d", "p1,a,b,c,d"], "row 3, column case_id: duplicate case_id 'p1'"),
    (["case_id,t1,t1ce,t2,flair", "p1,a,b,c,d", ",a,b,c,d"], "row 3, column case_id: empty"),
    (["case_id,t1,t1ce,t2,flair", "p 1,a,b,c,d"], "row 2, column case_id"),
    (["case_id,t1,t1ce,t2,flair,space", "p1,a,b,c,d,mni"], "row 2, column space: 'mni'"),
    (["case_id,t1,t1ce,t2,flair,label_convention", "p1,a,b,c,d,2021"], "row 2, column label_convention: '2021'"),
    (["case_id,t1,t1ce,t2,flair", "p1,a,b,c,d", "p2,a,b,,d"], "row 3, column t2: empty"),
    (["case_id,t1,t1ce,t2,flair,dicom_dir", "p1,a,b,c,d,e"], "row 2, column dicom_dir: give either"),
    (["case_id,dicom_dir,space", "p1,e,brats"], "row 2, column space"),
])
def test_row_schema_errors_name_row_and_column(tmp_path, lines, where):
    path = _sheet(tmp_path, lines)
    with pytest.raises(SamplesheetError) as info:
        read_samplesheet(path)
    assert info.value.path == str(path)
    assert where in info.value.problem


@pytest.mark.parametrize("lines,what", [
    (["id,t1,t1ce,t2,flair", "p1,a,b,c,d"], "missing column 'case_id'"),
    (["case_id,t1,t1ce,flair", "p1,a,b,d"], "missing column(s) t2"),
    (["case_id,seg", "p1,a"], "needs columns t1,t1ce,t2,flair or dicom_dir"),
    (["case_id,t1,t1ce,t2,flair,mask", "p1,a,b,c,d,e"], "unknown column(s) mask"),
    (["case_id,t1,t1ce,t2,flair"], "no rows"),
])
def test_column_schema_errors_name_the_column(tmp_path, lines, what):
    path = _sheet(tmp_path, lines)
    with pytest.raises(SamplesheetError) as info:
        read_samplesheet(path)
    assert what in info.value.problem


def test_missing_samplesheet(tmp_path):
    with pytest.raises(SamplesheetError, match="samplesheet not found"):
        read_samplesheet(tmp_path / "none.csv")


def test_schema_errors_are_input_errors_so_the_cli_exits_2(tmp_path):
    from gliocascade.errors import InputError

    assert issubclass(SamplesheetError, InputError)


def test_byte_order_mark_is_ignored(tmp_path):
    """Spreadsheet programs save CSV with a UTF-8 BOM; the first column must still be case_id."""
    from gliocascade.samplesheet import read_samplesheet
    from gliocascade.samplesheet_schema import read_rows

    for mod in ("t1", "t1ce", "t2", "flair"):
        (tmp_path / f"a_{mod}.nii.gz").write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes("\ufeffcase_id,t1,t1ce,t2,flair\na,a_t1.nii.gz,a_t1ce.nii.gz,a_t2.nii.gz,a_flair.nii.gz\n"
                      .encode("utf-8"))
    assert [r.case_id for r in read_samplesheet(sheet)] == ["a"]
    assert read_rows(sheet)[0]["case_id"] == "a"


@pytest.mark.parametrize("bad_id", ["..", ".", "report", "a/b", "é"])
def test_case_ids_that_would_escape_or_collide_with_the_output_tree_are_refused(tmp_path, bad_id):
    """Case ids become folder names under OUT: dots-only, 'report', slashes and non-ASCII are refused."""
    from gliocascade.io import SamplesheetError
    from gliocascade.samplesheet import read_samplesheet
    from gliocascade.samplesheet_schema import validate_samplesheet

    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"case_id,t1,t1ce,t2,flair\n{bad_id},a.nii.gz,b.nii.gz,c.nii.gz,d.nii.gz\n", encoding="utf-8")
    with pytest.raises(SamplesheetError, match="case_id"):
        read_samplesheet(sheet)
    with pytest.raises(SamplesheetError, match="case_id"):
        validate_samplesheet(sheet)
