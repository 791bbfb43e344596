"""A module's meta.yml against its process: the declared channels, element by element.

nf-core documents every module in a meta.yml beside its main.nf (inputs, outputs with file
patterns, topics). Documentation that nobody checks drifts, so this reads both sides and lists
every difference: the input channels and their elements in order, the output emits and their
elements, the topics, each element's type (map for meta, file or directory for paths), and that
every output's default file name (ext.prefix unset) matches the pattern meta.yml gives.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nfcheck import _section, interpolate, parse_module, sample_values

REQUIRED_KEYS = ("name", "description", "keywords", "tools", "input", "output")
CHANNEL_OPTIONS = ("emit", "optional", "topic")  # options of a whole channel, not of one element


@dataclass
class Element:
    """One component of a channel: `val(meta)`, `path(x, stageAs: ...)`, `path("pattern")`, `eval(...)`."""

    qualifier: str
    name: str                                 # the identifier, or the quoted pattern / command as written
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Channel:
    elements: list[Element]
    options: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.elements]


def split_top(text: str) -> list[str]:
    """Splits at commas outside parentheses, brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _option(part: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"(\w+):\s*(.+)", part, re.S)
    return (m.group(1), m.group(2).strip()) if m else None


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _element(qualifier: str, inner: str) -> Element:
    first, *rest = split_top(inner)
    options = dict(o for o in map(_option, rest) if o)
    return Element(qualifier, _unquote(first), options)


def parse_declaration(line: str) -> Channel:
    """One `input:`/`output:` line: a tuple of elements or a single element, with its options."""
    line = line.strip()
    if line.startswith("tuple "):
        elements, options = [], {}
        for part in split_top(line[len("tuple "):]):
            m = re.fullmatch(r"(val|path|env|eval|stdin|stdout)\((.*)\)", part, re.S)
            if m:
                elements.append(_element(m.group(1), m.group(2)))
            elif (opt := _option(part)) is not None:
                options[opt[0]] = opt[1]
            else:
                raise ValueError(f"cannot read tuple component {part!r}")
        return Channel(elements, options)
    m = re.match(r"(val|path|env|eval|stdin|stdout)\b", line)
    if not m:
        raise ValueError(f"cannot read declaration {line!r}")
    qualifier, rest_text = m.group(1), line[m.end():]
    if rest_text.startswith("("):  # path(x, stageAs: ...), emit: y
        inner = split_top(rest_text)[0]
        parts = split_top(inner[1:-1]) + split_top(rest_text[len(inner):].lstrip(" ,"))
    else:                          # path x, stageAs: ...  /  path "pattern", emit: y
        parts = split_top(rest_text)
    first, rest = parts[0], parts[1:]
    element_opts, channel_opts = {}, {}
    for part in rest:
        opt = _option(part)
        if opt is None:
            raise ValueError(f"cannot read option {part!r} of {line!r}")
        (channel_opts if opt[0] in CHANNEL_OPTIONS else element_opts)[opt[0]] = opt[1]
    return Channel([Element(qualifier, _unquote(first), element_opts)], channel_opts)


def _declarations(section: str) -> list[Channel]:
    lines = [ln.strip() for ln in section.splitlines()]
    return [parse_declaration(ln) for ln in lines if ln and not ln.startswith("//")]


def process_channels(main_nf: Path) -> tuple[list[Channel], list[Channel]]:
    """(input channels, output channels) as the process in ``main_nf`` declares them."""
    text = main_nf.read_text()
    body = text[text.index("{") + 1:]
    order = ["input", "output", "when", "script", "stub"]
    return (_declarations(_section(body, "input", order[1:])),
            _declarations(_section(body, "output", order[2:])))


def _meta_channel(entry, where: str) -> list[tuple[str, dict]]:
    """A meta.yml channel, `- - a: {...}\n  - b: {...}` (a tuple) or `- a: {...}` (one element),
    as [(name, fields)]."""
    items = entry if isinstance(entry, list) else [entry]
    out = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"{where}: each element must be a one-key map, not {item!r}")
        (name, fields), = item.items()
        out.append((str(name), fields or {}))
    return out


def _meta_output(entry, where: str) -> list[tuple[str, dict]]:
    """An output emit: a list holding one tuple (`- - meta: ...`), or a list of one element."""
    if isinstance(entry, list) and len(entry) == 1 and isinstance(entry[0], list):
        return _meta_channel(entry[0], where)
    return _meta_channel(entry, where)


def _expected_type(element: Element, output: bool) -> set[str]:
    if element.qualifier == "val":
        return {"map"} if element.name == "meta" else {"string", "integer", "boolean", "value"}
    if element.qualifier == "eval":
        return {"eval"}
    if element.qualifier == "path":
        if output:
            return {"directory"} if "dir" in element.options.get("type", "") else {"file"}
        return {"file", "directory"}
    return {element.qualifier}


def _compare(label: str, declared: list[Element], documented: list[tuple[str, dict]], output: bool,
             values: dict[str, str] | None) -> list[str]:
    problems = []
    names, doc_names = [e.name for e in declared], [n for n, _ in documented]
    if names != doc_names:
        return [f"{label}: main.nf declares {names}, meta.yml documents {doc_names}"]
    for element, (name, fields) in zip(declared, documented):
        kind = fields.get("type")
        if kind not in _expected_type(element, output):
            problems.append(f"{label} {name}: type {kind!r}, expected one of {sorted(_expected_type(element, output))}")
        if not fields.get("description"):
            problems.append(f"{label} {name}: no description")
        if output and element.qualifier == "path":
            pattern = fields.get("pattern")
            default = interpolate(element.name, values or {})
            if not pattern:
                problems.append(f"{label} {name}: no pattern")
            elif not fnmatch.fnmatchcase(default, pattern):
                problems.append(f"{label} {name}: default name {default!r} does not match pattern {pattern!r}")
    return problems


def check_meta(module_dir: Path) -> list[str]:
    """Every difference between ``module_dir``/meta.yml and ``module_dir``/main.nf ([] when none)."""
    meta_path, main_nf = module_dir / "meta.yml", module_dir / "main.nf"
    if not meta_path.is_file():
        return [f"{module_dir.name}: no meta.yml"]
    meta = yaml.safe_load(meta_path.read_text()) or {}
    problems = [f"meta.yml: no {key}" for key in REQUIRED_KEYS if not meta.get(key)]
    if problems:
        return problems
    if meta["name"] != module_dir.name:
        problems.append(f"meta.yml: name {meta['name']!r} is not the folder's {module_dir.name!r}")
    if not isinstance(meta["keywords"], list):
        problems.append("meta.yml: keywords must be a list")
    tools = [name for t in meta["tools"] for name in (t if isinstance(t, dict) else {t: None})]
    if "gliocascade" not in tools:
        problems.append(f"meta.yml: tools {tools} lack gliocascade")
    if meta.get("authors", ["gliocascade"]) != ["gliocascade"]:
        problems.append(f"meta.yml: authors must be omitted or [gliocascade], not {meta['authors']}")

    inputs, outputs = process_channels(main_nf)
    values = sample_values(parse_module(main_nf))
    doc_inputs = meta["input"] if isinstance(meta["input"], list) else []
    if len(doc_inputs) != len(inputs):
        problems.append(f"input: main.nf declares {len(inputs)} channels, meta.yml documents {len(doc_inputs)}")
    for i, (channel, entry) in enumerate(zip(inputs, doc_inputs), start=1):
        problems += _compare(f"input {i}", channel.elements, _meta_channel(entry, f"input {i}"), False, None)

    by_emit = {}
    for channel in outputs:
        emit = channel.options.get("emit")
        if emit is None:
            problems.append(f"output {channel.names}: no emit name")
            continue
        by_emit[emit] = channel
    doc_outputs = meta["output"] if isinstance(meta["output"], dict) else {}
    if list(by_emit) != list(doc_outputs):
        problems.append(f"output: main.nf emits {list(by_emit)}, meta.yml documents {list(doc_outputs)}")
    for emit in by_emit.keys() & doc_outputs.keys():
        problems += _compare(f"output {emit}", by_emit[emit].elements,
                             _meta_output(doc_outputs[emit], f"output {emit}"), True, values)

    topics = {}
    for channel in outputs:
        if "topic" in channel.options:
            topics[channel.options["topic"]] = channel
    doc_topics = meta.get("topics") or {}
    if sorted(topics) != sorted(doc_topics):
        problems.append(f"topics: main.nf sends to {sorted(topics)}, meta.yml documents {sorted(doc_topics)}")
    for topic in topics.keys() & doc_topics.keys():
        problems += _compare(f"topic {topic}", topics[topic].elements,
                             _meta_output(doc_topics[topic], f"topic {topic}"), True, values)
    return problems
