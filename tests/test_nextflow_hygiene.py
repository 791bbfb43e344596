"""nf-core module hygiene: a meta.yml per module that matches its process, ext.prefix honoured,
one container for all processes, and samplesheet rows read by column name.

The meta.yml check parses both files (`nfmeta.check_meta`); the mutation controls below show it
fails when either side drifts. The ext.prefix check runs every stub with ext.prefix set and looks
for the renamed outputs its process declares.
"""
from __future__ import annotations

import re
import shutil

import pytest

import nfcheck
from nfcheck import MODULES, ROOT, check_contract, check_stub, modules, parse_module
from nfmeta import check_meta, parse_declaration

MODULE_DIRS = sorted(p for p in MODULES.iterdir() if p.is_dir())
IDS = [p.name for p in MODULE_DIRS]
# TUNE_THRESHOLD's outputs are its input model folders, named by TRAIN's ext.prefix: it names nothing itself.
NAMES_NOTHING = {"tune_threshold"}


def test_every_module_folder_has_a_main_nf_and_a_meta_yml():
    assert IDS, f"no modules under {MODULES}"
    for folder in MODULE_DIRS:
        assert (folder / "main.nf").is_file(), folder
        assert (folder / "meta.yml").is_file(), f"{folder.relative_to(ROOT)} has no meta.yml"


@pytest.mark.parametrize("folder", MODULE_DIRS, ids=IDS)
def test_meta_yml_matches_the_process(folder):
    assert check_meta(folder) == []


def test_declarations_are_read_element_by_element():
    tup = parse_declaration("tuple val(meta), path(seg, stageAs: 'pred/*'), path(\"x_${a}.csv\", type: 'dir'), "
                            "emit: seg, optional: true")
    assert tup.names == ["meta", "seg", "x_${a}.csv"]
    assert tup.elements[1].options == {"stageAs": "'pred/*'"} and tup.elements[2].options == {"type": "'dir'"}
    assert tup.options == {"emit": "seg", "optional": "true"}
    one = parse_declaration("path models, stageAs: 'model_?'")
    assert one.names == ["models"] and one.elements[0].options == {"stageAs": "'model_?'"} and not one.options
    out = parse_declaration('path "${task.ext.prefix ?: \'report\'}/cases/*.html", emit: case_pages, optional: true')
    assert out.names == ["${task.ext.prefix ?: 'report'}/cases/*.html"] and out.options["emit"] == "case_pages"


MUTATIONS = [
    # (module, file, old, new, a phrase of the expected problem)
    ("evaluate", "main.nf", "path(gt, stageAs:", "path(reference, stageAs:", "input 1: main.nf declares"),
    ("postprocess", "main.nf", '    tuple val(meta), path("provenance_postprocess.json")',
     '    tuple val(meta), path("${task.ext.prefix ?: meta.id}_extra.nii.gz"), emit: extra\n'
     '    tuple val(meta), path("provenance_postprocess.json")', "output: main.nf emits"),
    ("preprocess", "main.nf", "    path atlas\n", "", "input: main.nf declares 1 channels"),
    ("predict", "meta.yml", 'pattern: "*_pred.nii.gz"', 'pattern: "*_labels.nii.gz"', "does not match pattern"),
    ("convert", "meta.yml", '      - "converted/${task.ext.prefix ?: meta.id}_flair.nii.gz":\n'
     "          type: file\n          description: FLAIR image\n", "", "output images: main.nf declares"),
    ("phantom", "meta.yml", "          type: directory\n", "          type: file\n", "type 'file'"),
    ("report", "meta.yml", "  case_pages:", "  pages:", "meta.yml documents"),
    ("train", "meta.yml", "authors:\n  - gliocascade", "authors:\n  - someone", "authors must be"),
]


@pytest.mark.parametrize("module,name,old,new,expected", MUTATIONS,
                         ids=[f"{m}-{n}-{e.split()[0]}" for m, n, _, _, e in MUTATIONS])
def test_meta_check_fails_when_either_side_drifts(tmp_path, module, name, old, new, expected):
    """Mutation control: a copy of a module with one change on one side must be reported."""
    copy = tmp_path / module
    shutil.copytree(MODULES / module, copy)
    text = (copy / name).read_text()
    assert old in text, f"mutation does not apply to {module}/{name}"
    (copy / name).write_text(text.replace(old, new, 1))
    problems = check_meta(copy)
    assert any(expected in p for p in problems), problems


def test_meta_check_fails_without_a_meta_yml(tmp_path):
    copy = tmp_path / "evaluate"
    shutil.copytree(MODULES / "evaluate", copy)
    (copy / "meta.yml").unlink()
    assert check_meta(copy) == ["evaluate: no meta.yml"]


@pytest.mark.parametrize("path", modules(), ids=[p.parent.name for p in modules()])
def test_outputs_are_named_by_ext_prefix(path):
    """No output pattern names the case id directly; the prefix default keeps today's names."""
    module = parse_module(path)
    text = path.read_text()
    for pattern, _is_dir in module.outputs:
        assert "meta.id}" not in pattern.replace("${task.ext.prefix ?: meta.id}", ""), pattern
    if path.parent.name in NAMES_NOTHING:
        return
    assert re.search(r"""^    def prefix = task\.ext\.prefix \?: (?:"\$\{meta\.id\}"|'\w+')$""", text, re.M)
    assert "${prefix}" in module.script and "prefix" in module.stub_defs


@pytest.mark.parametrize("path", [p for p in modules() if p.parent.name not in NAMES_NOTHING],
                         ids=[p.parent.name for p in modules() if p.parent.name not in NAMES_NOTHING])
def test_ext_prefix_renames_every_output(path, tmp_path, monkeypatch):
    """With ext.prefix set, the stub writes the outputs the process declares under the new name,
    none under the case id, and the command line passes the prefix."""
    name = parse_module(path).name
    original = nfcheck.modules_config
    monkeypatch.setattr(nfcheck, "modules_config",
                        lambda config=ROOT / "conf" / "modules.config": {
                            **original(config), name: {**original(config).get(name, {}), "prefix": "renamed"}})
    monkeypatch.setitem(nfcheck.SAMPLE_VARS, "first", "renamed000")  # PHANTOM's first case: prefix + seed
    assert check_stub(path, tmp_path) == []
    made = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")]
    assert any("renamed" in p for p in made), made
    assert not any(nfcheck.SAMPLE_META["id"] in p for p in made), made
    assert any("renamed" in a for a in check_contract(path))


def test_one_container_for_every_process():
    config = (ROOT / "nextflow.config").read_text()
    assert len(re.findall(r"^process\.container = params\.container$", config, re.M)) == 1
    for path in modules():
        assert "container" not in parse_module(path).directives, path


def test_samplesheet_rows_are_read_by_column_name():
    """No positional access (`row[3]`, `a[0].id`) in the workflows: columns and tuple parts by name."""
    files = [ROOT / "main.nf", *sorted((ROOT / "subworkflows").rglob("*.nf")), *sorted((ROOT / "workflows").rglob("*.nf"))]
    for f in files:
        code = "\n".join(ln for ln in f.read_text().splitlines() if not ln.strip().startswith(("//", "*", "/*")))
        code = re.sub(r"\{ a, b -> [^}\n]*\}", "", code)  # sort comparators compare whole items
        hits = re.findall(r"\b\w+\[\d+(?:\.\.\d+)?\]", code)
        assert not hits, f"{f.relative_to(ROOT)}: positional access {hits}"
    inputs = (ROOT / "subworkflows" / "local" / "prepare_inputs" / "main.nf").read_text()
    schema = __import__("json").loads((ROOT / "assets" / "schema_input.json").read_text())
    columns = [c for c, spec in schema["items"]["properties"].items() if "meta" not in spec]
    # the one place that knows samplesheetToList's order names every file column, in the schema's order
    m = re.search(r"table\.collect \{ meta, ([\w, ]+) ->", inputs)
    assert m and m.group(1).split(", ") == columns
