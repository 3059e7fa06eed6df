"""``rcnnexp train --help``: the config groups a user chooses from, and every key with its
type, default and meaning.

Nothing here is a second copy: the groups and options are the folders and files of
``conf/``, the defaults are the schemas' (:mod:`rcnnexp.config`), and each key's description
is the comment beside (or just above) its field in the schema's source.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf

from rcnnexp.config import SCHEMAS, Config

HEADER = """\
rcnnexp train: train a model; every option is a Hydra override.

Examples:
  rcnnexp train                                   # RCNN on the embedded digits, CPU
  rcnnexp train model=rcnn model.K=128 trainer.epochs=50
  rcnnexp train experiment=NAME                   # a paper's table row (conf/experiment)
  rcnnexp train -m model.K=32,64                  # a sweep: one run directory per job
  rcnnexp train -m table=rcnn/t4 trainer.seed=0,1,2   # a paper's table, 3 seeds a row
  rcnnexp train -m table=rcnn/t4 --dry-run        # list a sweep's jobs, run nothing
  rcnnexp train trainer.resume=auto hydra.run.dir=outputs/DATE/TIME   # continue a run
  rcnnexp train -m ... trainer.resume=auto hydra.sweep.dir=DIR   # continue a sweep there
  rcnnexp train --cfg job                         # print the composed config"""

FOOTER = """\
Runs go to outputs/<date>/<time>/ (sweeps: outputs/multirun/<date>/<time>/<job>/).
Powered by Hydra (https://hydra.cc): --hydra-help lists its own flags; `rcnnexp --help`
lists the other commands."""

WIDTH = 100  # characters a line of the help takes at most
GROUP_NOTES = {
    "experiment": "a paper's table row or a named protocol (docs/experiments.md)",
    "table": "every row of a paper's table as one sweep: needs -m",
    "recipe": "a paper's training protocol (optimizer, schedule, epochs, data protocol)",
    "cluster": "where a sweep's jobs run, e.g. SLURM with requeue: needs -m (docs/cluster.md)",
}


def train_help(conf_dir: Path) -> str:
    return "\n\n".join([HEADER, groups_section(conf_dir), keys_section(conf_dir), FOOTER]) + "\n"


# -- groups ------------------------------------------------------------------------------------
def groups_section(conf_dir: Path) -> str:
    """Each group the user chooses an option of, its options (folders as ``folder/name``)
    and its default; groups conf/config.yaml fills in itself are named apart."""
    chosen, automatic = default_choices(conf_dir)
    lines = ["== Config groups == (choose one with group=option; * the default)"]
    for group, options in user_groups(conf_dir).items():
        if group in automatic:
            continue
        default = chosen.get(group)
        listed = [f"{o}*" if o == default else o for o in options]
        note = f" {GROUP_NOTES[group]}" if group in GROUP_NOTES else ""
        lines.append(f"{group}:{note}")
        lines.extend(_wrap(", ".join(listed), "  "))
        if default is None:
            lines.append("  (none by default)")
    for group, source in automatic.items():
        lines.extend(_wrap(f"{group}: chosen automatically as {source} where such a file "
                           f"exists (conf/{group}/: {', '.join(user_groups(conf_dir)[group])})",
                           "  ", first=""))
    return "\n".join(lines)


def user_groups(conf_dir: Path) -> dict[str, list[str]]:
    """group -> its options, from conf/<group>/**.yaml (Hydra's own groups left out)."""
    groups = {}
    for folder in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(str(f.relative_to(folder).with_suffix("")) for f in folder.rglob("*.yaml"))
        groups[folder.name] = sorted(options, key=lambda o: ("/" in o, o))
    return groups


def default_choices(conf_dir: Path) -> tuple[dict[str, str | None], dict[str, str]]:
    """From conf/config.yaml's defaults list: group -> default option, and the groups chosen
    by interpolation (``optional model_dataset: ${model}_${dataset}``) -> that pattern."""
    chosen: dict[str, str | None] = {}
    automatic: dict[str, str] = {}
    for entry in OmegaConf.to_container(OmegaConf.load(conf_dir / "config.yaml"))["defaults"]:
        if not isinstance(entry, dict):
            continue
        [(key, value)] = entry.items()
        group = key.removeprefix("optional ").strip()
        if group.startswith(("override ", "hydra")):
            continue
        if value is not None and "${" in str(value):
            automatic[group] = str(value).replace("${", "<").replace("}", ">") + ".yaml"
        else:
            chosen[group] = value
    return chosen, automatic


# -- keys --------------------------------------------------------------------------------------
def keys_section(conf_dir: Path) -> str:
    """Every key in the root schema's order; a group's keys by schema (:func:`_group_keys`)."""
    lines = _wrap("== Keys == (override any with key=value; the defaults are the schemas', "
                  "which an option, preset or model_dataset file may change: rcnnexp train "
                  "--cfg job [overrides] prints what a run uses)", "   ", first="")
    for f in dataclasses.fields(Config):
        if f.name in SCHEMAS:
            lines.append("")
            lines.extend(_group_keys(conf_dir, f.name))
        elif dataclasses.is_dataclass(_default(f)):
            lines.append("")
            lines.extend(_key_lines(type(_default(f)), f.name + ".", ""))
        else:
            lines.extend(_key_line(Config, f, "", ""))
    return "\n".join(lines)


def _group_keys(conf_dir: Path, group: str) -> list[str]:
    """A group's keys, schema by schema: the keys they share once, then each one's own."""
    by_schema: dict[str, list[str]] = {}
    for option in user_groups(conf_dir)[group]:
        schema = schema_of(conf_dir, group, option)
        if schema is not None:
            by_schema.setdefault(schema, []).append(option)
    schemas = SCHEMAS[group]
    shared = _shared_base(list(schemas.values()))
    lines = [f"{group}: (its keys depend on the chosen {group}=OPTION)"]
    skip: set[str] = set()
    if shared is not None and len(schemas) > 1:
        lines.append(f"  every {group}:")
        lines.extend(_key_lines(shared, f"{group}.", "    "))
        skip = {f.name for f in dataclasses.fields(shared)}
    for name, schema in schemas.items():
        options = by_schema.get(name, [])
        summary = "" if _is_generated(schema) else _first_line(schema.__doc__ or "")
        title = f"  {name}" + (f": {summary}" if summary else "")
        lines.extend(_wrap(title, "  ", first=""))
        if options and options != [name]:
            lines.extend(_wrap(f"options: {', '.join(options)}", "      "))
        own = [f for f in dataclasses.fields(schema) if f.name not in skip
               or _default(f) != _default(_field(shared, f.name))]
        lines.extend(_key_lines(schema, f"{group}.", "    ", own))
    return lines


def schema_of(conf_dir: Path, group: str, option: str) -> str | None:
    """The schema an option's YAML extends, following ``defaults`` to ``/schema/<group>``."""
    path = conf_dir / group / f"{option}.yaml"
    for _ in range(10):  # an option extends another option or a schema
        defaults = OmegaConf.to_container(OmegaConf.load(path)).get("defaults", [])
        nxt = None
        for entry in defaults:
            if isinstance(entry, dict):
                [(key, value)] = entry.items()
                if key.startswith(f"/schema/{group}"):
                    return str(value)
            elif isinstance(entry, str) and entry != "_self_":
                nxt = entry
        if nxt is None:
            return None
        path = conf_dir / group / f"{nxt}.yaml"
    return None


def _key_lines(schema: type, prefix: str, indent: str,
               fields: list[dataclasses.Field[Any]] | None = None) -> list[str]:
    lines = []
    for f in fields if fields is not None else dataclasses.fields(schema):
        if f.name != "_target_":
            lines.extend(_key_line(schema, f, prefix, indent))
    return lines


def _key_line(schema: type, f: dataclasses.Field[Any], prefix: str, indent: str) -> list[str]:
    """``model.K: int = 96  # feature maps in every layer``, the description wrapped below
    when the line would be too long."""
    kind = _type_name(schema, f)
    default = _default(f)
    shown = "(required)" if default is MISSING or default == "???" else _yaml(default)
    head = f"{indent}{prefix}{f.name}: {kind} = {shown}"
    doc = field_docs(schema).get(f.name) or _members_doc(_enum_of(schema, f))
    if not doc:
        return [head]
    if len(head) + 4 + len(doc) <= WIDTH:
        return [f"{head}  # {doc}"]
    return [head, *_wrap(doc, indent + "    ")]


def _members_doc(enum: type[Enum] | None) -> str:
    """An enum-typed key without a comment of its own: what each value means."""
    if enum is None:
        return ""
    comments = _comments(enum)
    return "; ".join(f"{m.value}: {comments[m.name]}" for m in enum if m.name in comments)


def field_docs(schema: type) -> dict[str, str]:
    """Each field's description: the comment at the end of its line, else the comment lines
    just above it; a subclass's own comment wins over its base's."""
    docs: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if dataclasses.is_dataclass(cls) and cls is not object:
            docs.update(_comments(cls))
    return docs


def _comments(cls: type) -> dict[str, str]:
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    [node] = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    out = {}
    for stmt in node.body:
        target = (stmt.target if isinstance(stmt, ast.AnnAssign) else stmt.targets[0]
                  if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None)
        if not isinstance(target, ast.Name):
            continue  # a field (dataclass) or a member (enum) is a plain name
        end = stmt.end_lineno or stmt.lineno
        trailing = [comments[n] for n in range(stmt.lineno, end + 1) if n in comments]
        above: list[str] = []
        n = stmt.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        text = " ".join(trailing or above)
        if text:
            out[target.id] = text
    return out


def _enum_of(schema: type, f: dataclasses.Field[Any]) -> type[Enum] | None:
    """The Enum a field holds (``Device``), or a list of (``list[Direction]``)."""
    hint = typing.get_type_hints(schema).get(f.name, f.type)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    inner = args[0] if len(args) == 1 else hint
    if isinstance(inner, type) and issubclass(inner, Enum):
        return inner
    return None


def _type_name(schema: type, f: dataclasses.Field[Any]) -> str:
    enum = _enum_of(schema, f)
    if enum is None:
        return str(f.type).replace("None", "null")
    values = " | ".join(str(e.value) for e in enum)
    return f"list of ({values})" if str(f.type).startswith("list") else values


def _default(f: dataclasses.Field[Any] | None) -> Any:
    if f is None:
        return None
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING if f.default is dataclasses.MISSING else f.default


def _field(schema: type | None, name: str) -> dataclasses.Field[Any] | None:
    if schema is None:
        return None
    return next((f for f in dataclasses.fields(schema) if f.name == name), None)


def _yaml(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    if dataclasses.is_dataclass(value):
        return "{...}"
    return json.dumps(value)


def _shared_base(schemas: list[type]) -> type | None:
    """The most specific dataclass every schema derives from, if any."""
    common = [c for c in schemas[0].__mro__ if dataclasses.is_dataclass(c)
              and all(issubclass(s, c) for s in schemas)]
    return common[0] if common else None


def _is_generated(cls: type) -> bool:
    """dataclass writes ``Name(field: type = ...)`` as the docstring of a class without one."""
    return bool(cls.__doc__) and cls.__doc__.startswith(f"{cls.__name__}(")


def _first_line(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _wrap(text: str, indent: str, first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent if first is None else first,
                         subsequent_indent=indent, break_on_hyphens=False) or []
