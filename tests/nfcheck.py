"""Static checks of the Nextflow pipeline without a Nextflow runtime.

Nextflow cannot run on every machine that runs the test suite, so the pipeline is checked by
reading it: the official language server (or `nextflow lint`) for syntax and names, and small
parsers here for the parts the server does not check, i.e. that every module's `gliocascade`
command line still parses against the click CLI and that every `stub:` block creates the
outputs its process declares.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / "modules" / "local"
NF_LINT = ROOT.parent / "shared" / "tools" / "nf_lint.py"

# Sample values for the Groovy variables of the modules' script and stub blocks. A variable
# missing here fails the contract test, so a new one has to be given a realistic value.
SAMPLE_META = {"id": "case01", "n": "2", "seed": "0", "fold": "0", "folds": "5",
               "label_convention": "2019", "space": "native", "config": "tiny"}
SAMPLE_VARS = {
    "task.cpus": "2",
    "model_args": "--model model_1 --model model_2",
    "metrics_args": "--metrics metrics/case01_metrics.csv --metrics metrics/case02_metrics.csv",
    "atlas_arg": "--atlas atlas",
    "native_arg": "--native-transforms transforms",
    "pred_native_arg": "--pred-native pred_native/case01_seg_native.nii.gz",
    "mask_arg": "--brainmask input/brainmask/case01_brainmask.nii.gz",
    "failures_arg": "--failures failures/failures.csv",
    "case_arg": "--case-files case_files.csv",
    "gt_arg": "--gt reference/case01_seg.nii.gz",
    "input_args": "--dicom study/case01",
    "image_args": "--t1ce input/t1ce/case01_t1ce.nii.gz --flair input/flair/case01_flair.nii.gz",
    "first": "case01000",
}


# --------------------------------------------------------------------------- linting

def linter() -> tuple[str, list[str]] | None:
    """(name, command prefix) of the linter to use: `nextflow lint` first, else nf_lint.py."""
    if shutil.which("nextflow"):
        return "nextflow lint", ["nextflow", "lint"]
    if NF_LINT.is_file():
        return f"nf_lint.py --strict ({NF_LINT})", [sys.executable, str(NF_LINT), "--strict"]
    return None


def run_nf_lint(*args: str, project: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs the language-server driver with ``args`` on ``project``."""
    return subprocess.run([sys.executable, str(NF_LINT), *args, str(project)], capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class Dag:
    """A Mermaid DAG from the language server: node names and edges between node ids."""

    names: dict[str, str]
    edges: set[tuple[str, str]]

    def reachable(self, src: str) -> set[str]:
        seen, todo = set(), [src]
        while todo:
            n = todo.pop()
            for a, b in self.edges:
                if a == n and b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    def ids(self, name: str) -> list[str]:
        return [i for i, n in self.names.items() if n == name]

    def before(self, first: str, then: str) -> bool:
        """True when some node called ``then`` is downstream of some node called ``first``."""
        targets = set(self.ids(then))
        return any(self.reachable(i) & targets for i in self.ids(first))


def parse_mermaid(text: str) -> Dag:
    names = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(v\d+)\(\[([A-Za-z0-9_]+)\]\)", text, re.M)}
    edges = {(m.group(1), m.group(2)) for m in re.finditer(r"^\s*(v\d+) --> (v\d+)\s*$", text, re.M)}
    return Dag(names, edges)


# --------------------------------------------------------------------------- Groovy parsing

@dataclass
class Module:
    """The parts of a process that the checks need."""

    path: Path
    name: str
    inputs: list[str]
    outputs: list[tuple[str, bool]]          # (path pattern, is a directory)
    script_defs: dict[str, str]
    script: str
    stub_defs: dict[str, str]
    stub: str
    directives: dict[str, str] = field(default_factory=dict)


def _section(body: str, name: str, following: list[str]) -> str:
    m = re.search(rf"^\s*{name}:\s*$", body, re.M)
    if not m:
        return ""
    rest = body[m.end():]
    ends = [mm.start() for f in following for mm in [re.search(rf"^\s*{f}:\s*$", rest, re.M)] if mm]
    return rest[: min(ends)] if ends else rest


def _block(section: str) -> tuple[dict[str, str], str]:
    """`def x = ...` lines and the triple-quoted shell text of a script/stub section."""
    defs = {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s*def (\w+) = (.+)$", section, re.M)}
    m = re.search(r'"""(.*?)"""', section, re.S)
    return defs, (m.group(1) if m else "")


def parse_module(path: Path) -> Module:
    text = path.read_text()
    m = re.search(r"^process (\w+) \{\n(.*)^\}", text, re.M | re.S)
    if not m:
        raise ValueError(f"{path}: no process block")
    name, body = m.group(1), m.group(2)
    order = ["input", "output", "when", "script", "stub"]
    inp = _section(body, "input", order[1:])
    out = _section(body, "output", order[2:])
    inputs = re.findall(r"path\(?\s*(\w+)", inp) + re.findall(r"val\(?\s*(\w+)", inp)
    outputs = []
    for mm in re.finditer(r'path[( ]"([^"]+)"([^)\n]*)', out):
        outputs.append((mm.group(1), "type: 'dir'" in mm.group(2)))
    sdefs, script = _block(_section(body, "script", ["stub"]))
    tdefs, stub = _block(_section(body, "stub", []))
    directives = {mm.group(1): mm.group(2) for mm in re.finditer(r"^    (tag|label|container|stageInMode) (.+)$", body, re.M)}
    return Module(path, name, inputs, outputs, sdefs, script, tdefs, stub, directives)


def modules() -> list[Path]:
    return sorted(MODULES.glob("*/main.nf"))


def params_defaults(config: Path = ROOT / "nextflow.config") -> dict[str, str | None]:
    """The top-level `params { }` defaults of nextflow.config (strings unquoted, null as None)."""
    text = config.read_text()
    m = re.search(r"^params \{\n(.*?)^\}", text, re.M | re.S)
    out: dict[str, str | None] = {}
    for line in (m.group(1) if m else "").splitlines():
        mm = re.match(r"\s*(\w+)\s*=\s*(.+?)\s*$", line)
        if mm:
            v = mm.group(2)
            out[mm.group(1)] = None if v == "null" else v.strip("'\"")
    return out


def profile_params(profile: str, config: Path = ROOT / "nextflow.config") -> dict[str, str]:
    """The `params.x = value` settings of one profile of nextflow.config."""
    text = config.read_text()
    m = re.search(rf"^    {profile} \{{\n(.*?)^    \}}", text, re.M | re.S)
    body = m.group(1) if m else ""
    return {mm.group(1): mm.group(2).strip("'\"")
            for mm in re.finditer(r"params\.(\w+)\s*=\s*(.+?)\s*$", body, re.M)}


def modules_config(config: Path = ROOT / "conf" / "modules.config") -> dict[str, dict[str, str]]:
    """withName selector -> {'args': GString text, 'prefix': value} from conf/modules.config."""
    text = config.read_text()
    out: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"withName: '(\w+)' \{(.*?)\n    \}", text, re.S):
        entry = {}
        a = re.search(r'ext\.args\s*=\s*\{\s*"([^"]*)"\s*\}', m.group(2))
        if a:
            entry["args"] = a.group(1)
        p = re.search(r"ext\.prefix\s*=\s*'([^']*)'", m.group(2))
        if p:
            entry["prefix"] = p.group(1)
        out[m.group(1)] = entry
    return out


# --------------------------------------------------------------------------- interpolation

class UnknownVariable(KeyError):
    pass


def interpolate(text: str, values: dict[str, str]) -> str:
    """Replaces Groovy `${expr}` / `$name` with sample values; an unknown one raises."""
    def lookup(expr: str) -> str:
        expr = expr.strip()
        if expr in values:
            return values[expr]
        choice = re.fullmatch(r"([\w.]+) \? '([^']*)' : '([^']*)'", expr)  # ${params.flag ? '--flag' : ''}
        if choice and choice.group(1) in values:
            truthy = str(values[choice.group(1)]).lower() not in ("", "false", "null", "0")
            return choice.group(2) if truthy else choice.group(3)
        raise UnknownVariable(f"no sample value for Groovy expression ${{{expr}}}")

    text = re.sub(r"\$\{([^}]*)\}", lambda m: lookup(m.group(1)), text)
    text = re.sub(r"(?<!\\)\$([A-Za-z_]\w*(?:\.\w+)*)", lambda m: lookup(m.group(1)), text)
    return text.replace("\\$", "$")


def prefix_values(module: Module, conf: dict[str, str], meta_id: str) -> dict[str, str]:
    """`prefix` and the output patterns' `task.ext.prefix ?: <default>`: ext.prefix from
    conf/modules.config, else the module's default (the case id, or a literal such as 'report')."""
    default = module.script_defs.get("prefix", 'task.ext.prefix ?: "${meta.id}"')
    m = re.fullmatch(r"""task\.ext\.prefix \?: (?:"\$\{meta\.id\}"|'([^']*)')""", default)
    if not m:
        raise AssertionError(f"{module.path}: prefix must be task.ext.prefix ?: <default>, not {default}")
    literal = m.group(1)
    prefix = conf.get("prefix", meta_id if literal is None else literal)
    key = "task.ext.prefix ?: meta.id" if literal is None else f"task.ext.prefix ?: '{literal}'"
    return {"prefix": prefix, key: prefix}


def sample_values(module: Module, process_name: str | None = None,
                  profile: str | None = None) -> dict[str, str]:
    """Sample values for one module: meta, params (defaults or a profile's), ext.args/prefix, inputs."""
    conf = modules_config().get(process_name or module.name, {})
    settings = {**params_defaults(), **(profile_params(profile) if profile else {})}
    params = {f"params.{k}": v for k, v in settings.items() if v is not None}
    meta = {f"meta.{k}": v for k, v in SAMPLE_META.items()}
    base = {**params, **meta}
    args = interpolate(conf.get("args", ""), base)
    values = {**base, **SAMPLE_VARS, "args": args, **prefix_values(module, conf, SAMPLE_META["id"]),
              "task.process": module.name}
    for name in module.inputs:
        values.setdefault(name, f"{name}_sample")
    return values


# --------------------------------------------------------------------------- contract

def command_line(shell: str) -> str:
    """The one `gliocascade ...` command of a script block (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", shell)
    calls = [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("gliocascade ")]
    if len(calls) != 1:
        raise AssertionError(f"expected exactly one gliocascade call, found {len(calls)}")
    return calls[0]


def check_contract(module_path: Path, process_name: str | None = None,
                   profile: str | None = None) -> list[str]:
    """Parses the module's command line (sample values substituted) with the click CLI.

    Returns the argv that was parsed; raises click.ClickException / UsageError on drift.
    """
    from gliocascade.cli import main

    module = parse_module(module_path)
    values = sample_values(module, process_name, profile)
    argv = shlex.split(interpolate(command_line(module.script), values))
    assert argv[0] == "gliocascade"
    name, rest = argv[1], argv[2:]
    command = main.commands.get(name)
    if command is None:
        raise AssertionError(f"{module_path}: unknown command 'gliocascade {name}'")
    # make_context parses and validates every option (types, choices, required) without running.
    command.make_context(name, list(rest), resilient_parsing=False)
    return argv


# --------------------------------------------------------------------------- stubs

def check_stub(module_path: Path, workdir: Path) -> list[str]:
    """Runs the stub block in ``workdir`` and returns the declared output patterns it missed."""
    module = parse_module(module_path)
    values = sample_values(module)
    script = interpolate(module.stub, values)
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=workdir, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PATH": os.environ.get("PATH", "")})
    if res.returncode != 0:
        raise AssertionError(f"{module_path}: stub block failed: {res.stderr}")
    missing = []
    for pattern, is_dir in module.outputs:
        if pattern == "refusal.csv":  # written only when the task refuses its case
            continue
        concrete = interpolate(pattern, values)
        hits = list(workdir.glob(concrete))
        if not hits or (is_dir and not any(h.is_dir() for h in hits)):
            missing.append(concrete)
    return missing


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- running a task

def stage_patterns(module: Module) -> dict[str, str]:
    """Input name -> its stageAs pattern ('' when staged under its own name)."""
    text = module.path.read_text()
    inp = _section(text[text.index("{") + 1:], "input", ["output"])
    out = {}
    for m in re.finditer(r"path[( ]\s*(\w+)(?:, stageAs: '([^']+)')?", inp):
        out[m.group(1)] = m.group(2) or ""
    return out


def _stage(items: list[Path], pattern: str, workdir: Path, copy: bool) -> list[str]:
    """Places inputs in the task folder as Nextflow does (links, or copies for stageInMode copy)."""
    names = []
    for i, src in enumerate(items, start=1):
        if not pattern:
            rel = src.name
        elif "?" in pattern:  # a run of ? is the 1-based index, zero-padded to its length
            rel = re.sub(r"\?+", lambda m: str(i).zfill(len(m.group(0))), pattern).replace("*", src.name)
        elif "*" in pattern:
            rel = pattern.replace("*", src.name)
        else:
            rel = pattern
        dst = workdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if copy and src.is_dir():
            shutil.copytree(src, dst)
        elif copy:
            shutil.copy2(src, dst)
        else:
            dst.symlink_to(src.resolve())
        names.append(rel)
    return names


def config_env(config: Path = ROOT / "nextflow.config") -> dict[str, str]:
    """The `env { }` scope of nextflow.config: variables Nextflow exports into every task."""
    m = re.search(r"^env \{\n(.*?)^\}", config.read_text(), re.M | re.S)
    return {mm.group(1): mm.group(2) for mm in re.finditer(r"^\s*(\w+)\s*=\s*'([^']*)'", m.group(1) if m else "", re.M)}


def task_env() -> dict[str, str]:
    """The environment of a task: the pipeline's env scope, the interpreter's scripts folder (a
    venv's bin) first on PATH."""
    scripts = str(Path(sys.executable).parent)
    return {**os.environ, **config_env(), "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}


class TaskRefused(AssertionError):
    """The task refused its case: exit 2 (ignored by Nextflow's error strategy), or, with the
    pipeline's GLIOCASCADE_REFUSAL_RECORD set, exit 0 and the reason in ``record``."""

    def __init__(self, module: str, stderr: str, record: Path | None = None):
        self.module, self.stderr, self.record = module, stderr, record
        super().__init__(f"{module} refused its input (exit 2): {stderr.strip()[-2000:]}")


def run_task(module_path: Path, workdir: Path, inputs: dict[str, Path | list[Path]],
             values: dict[str, str], profile: str = "test", process_name: str | None = None,
             timeout: int = 900, env: dict[str, str] | None = None) -> dict[str, list[Path]]:
    """Runs a module's script like a Nextflow task: stage inputs, interpolate, run, collect outputs.

    ``values`` gives the meta fields (``meta.x``) and the script's local variables; staged input
    names are filled in here. Returns each declared output pattern -> the files it matched, and
    fails when a non-optional output is missing (:class:`TaskRefused` when the task exited 2).
    """
    module = parse_module(module_path)
    workdir.mkdir(parents=True, exist_ok=True)
    copy = module.directives.get("stageInMode", "").strip("'") == "copy"
    base = sample_values(module, process_name, profile)
    base.update(values)
    conf = modules_config().get(process_name or module.name, {})
    base.update({**prefix_values(module, conf, base["meta.id"]), "args": interpolate(conf.get("args", ""), base)})
    patterns = stage_patterns(module)
    for name, pattern in patterns.items():
        items = inputs.get(name, [])
        items = items if isinstance(items, list) else [items]
        base[name] = " ".join(_stage(items, pattern, workdir, copy))
    for name, expr in module.script_defs.items():  # def x = input ? "--opt ${input}" : ''
        m = re.fullmatch(r"""(\w+) \? "([^"]*)" : ''""", expr)
        if m and name not in values and m.group(1) in patterns:
            base[name] = interpolate(m.group(2), base) if base[m.group(1)] else ""
    if "image_args" in module.script_defs and "image_args" not in values:  # PREDICT: the images it was given
        base["image_args"] = " ".join(f"--{m} {base[m]}" for m in ("t1", "t1ce", "t2", "flair") if base.get(m))
    cmd = interpolate(command_line(module.script), base)
    started = time.perf_counter()
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=workdir, capture_output=True, text=True,
                         timeout=timeout, env={**task_env(), **(env or {})})
    print(f"{module.name}: {time.perf_counter() - started:.1f} s: {cmd}", file=sys.stderr)
    if res.returncode == 2:
        raise TaskRefused(module.name, res.stderr)
    if res.returncode == 0 and (workdir / "refusal.csv").is_file():  # refused, recorded for the report
        raise TaskRefused(module.name, res.stderr, workdir / "refusal.csv")
    if res.returncode != 0:
        raise AssertionError(f"{module.name} failed (exit {res.returncode}): {cmd}\n{res.stderr[-4000:]}")
    text = module.path.read_text()
    found: dict[str, list[Path]] = {}
    for pattern, _is_dir in module.outputs:
        concrete = interpolate(pattern, base)
        hits = sorted(workdir.glob(concrete))
        optional = re.search(rf'path[( ]"{re.escape(pattern)}"[^\n]*optional: true', text) is not None
        if not hits and not optional:
            raise AssertionError(f"{module.name}: declared output {concrete} not produced by: {cmd}")
        found[pattern] = hits
    return found
