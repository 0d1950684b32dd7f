"""Reading a configuration: YAML, then ``${VAR}`` interpolation, then structuring.

The YAML loader is safe and refuses duplicate keys (plain PyYAML keeps the last one
silently, which hides typos in long files); before building anything it also refuses
a file whose aliases would expand past :data:`MAX_YAML_NODES` values. Interpolation
runs over the raw tree before any structuring, so one rule covers every string in
the file, including the free-form ``plugins.<name>.config`` mappings no schema
describes; text it produces is tagged :class:`~chamberlain.config.values.Interpolated`
so integer and boolean fields may still accept ``max_workers: ${WORKERS:-2}``.
The same pass finds ``${secret:name}`` references: it leaves them as written (they
are resolved when used, see :mod:`chamberlain.config.references`), records where
each one is, and refuses one anywhere a secret is not taken. Relative paths are
resolved after structuring, so the converter stays free of per-file state. This is
the only module that knows a file is involved; the rest of the package works on
values.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from chamberlain.config.converter import converter, render_path, walk
from chamberlain.config.problems import ConfigError, YamlPath, describe
from chamberlain.config.references import (
    ESCAPED,
    MARKER,
    REFERENCE_PATTERN,
    SECRET_PLACES_SHOWN,
    SecretReference,
    name_problem,
    takes_secrets,
)
from chamberlain.config.sections import IN_MEMORY, Config, Document, StateConfig
from chamberlain.config.values import Interpolated

# -------------------------------------------------------------------- interpolation

_INTERPOLATION_RE: Final = re.compile(
    rf"""
      \$\$\{{                                   # escaped: a literal ${{
    | {REFERENCE_PATTERN}                       # ${{secret:name}}: left for later
    | \$\{{ (?P<name>[A-Za-z_][A-Za-z0-9_]*)
           (?: :- (?P<default>[^}}]*) )? \}}     # ${{NAME}} or ${{NAME:-default}}
    | \$\{{                                     # any other ${{ is malformed
    """,
    re.VERBOSE,
)


@attrs.define(eq=False)
class _Pass:
    """What one interpolation pass over a document gathers."""

    environ: Mapping[str, str]
    problems: list[tuple[YamlPath, str]] = attrs.field(factory=list)
    references: list[SecretReference] = attrs.field(factory=list)


def _interpolate(node: object, path: YamlPath, run: _Pass) -> object:
    """Substitute ``${VAR}`` in every string value of ``node``; keys are left alone."""
    if isinstance(node, str):
        return _interpolate_string(node, path, run)
    if isinstance(node, Mapping):
        return {key: _interpolate(value, (*path, str(key)), run) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_interpolate(value, (*path, index), run) for index, value in enumerate(node)]
    return node


def _interpolate_string(text: str, path: YamlPath, run: _Pass) -> str:
    if "${" not in text:
        return text
    problems = run.problems
    before = len(problems)
    substituted = False
    # Where secrets are taken, a reference stays in the text until it is used, and so
    # does a literal one: resolution takes the escape out (see config.references).
    secrets_here = takes_secrets(path)
    references: list[SecretReference] = []

    def replace(match: re.Match[str]) -> str:
        nonlocal substituted
        if match.group() == "$${":
            if secrets_here and text.startswith(MARKER, match.end() - 2):
                return match.group()  # kept escaped: see the comment above
            return "${"
        secret = match["secret"]
        if secret is not None:
            problem = name_problem(secret)
            if not secrets_here:
                problem = (
                    f"${{secret:{secret}}}: a secret may only be used in {SECRET_PLACES_SHOWN}"
                )
            if problem is not None:
                problems.append((path, problem))
            else:
                references.append(SecretReference(path=render_path(path), name=secret))
            return match.group()
        name, default = match["name"], match["default"]
        if name is None:
            snippet = text[match.start() : match.start() + 20]
            expected = (
                "${secret:name}"
                if text.startswith(MARKER, match.start())
                else "${NAME} or ${NAME:-default}"
            )
            problems.append(
                (
                    path,
                    f"invalid reference {snippet!r}: expected {expected}"
                    " (write $${ for a literal ${)",
                )
            )
            return match.group()
        if default is not None and "${" in default:
            problems.append((path, f"${{{name}:-...}}: a default cannot contain ${{...}}"))
            return match.group()
        value = run.environ.get(name)
        if default is not None and not value:
            value = default
        if value is None:
            problems.append((path, f"environment variable {name} is not set"))
            return match.group()
        substituted = True
        # The environment's text is taken as it is, never as a reference.
        return value.replace(MARKER, ESCAPED) if secrets_here else value

    result = _INTERPOLATION_RE.sub(replace, text)
    if len(problems) > before:
        return text
    run.references.extend(references)
    return Interpolated(result) if substituted else result


# -------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one.

    Mapping keys are always text: YAML 1.1 reads a bare ``on``/``off``/``yes``/``no``
    as a boolean, which would turn a pipeline's ``on:`` key into ``True``.  Values
    keep YAML 1.1's reading (``enabled: no`` is false).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        for key_node, _ in node.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.tag == "tag:yaml.org,2002:bool"
                and not key_node.style
            ):
                key_node.tag = "tag:yaml.org,2002:str"
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable key: the base class reports it properly
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined at line {first.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


#: The most values (scalars, lists and mappings) a configuration file may hold once
#: every use of an alias (``*name``) is counted in full. A real file holds a few
#: thousand; a "billion laughs" file of a few hundred bytes expands to millions,
#: which interpolation and structuring would then copy one by one.
MAX_YAML_NODES: Final = 100_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _expansion_problem(root: yaml.Node) -> str | None:
    """Why the composed document is refused before it is built, or None.

    Aliases make the composed graph share nodes, so it stays as small as the text;
    this counts what building it would produce, in time linear in the graph (each
    node's expanded size is computed once), and finds an alias inside its own anchor.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the path from the root to the node being visited
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = min(total, MAX_YAML_NODES + 1)  # keeps the numbers small
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            mark = node.start_mark
            return (
                f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: an alias"
                " inside this node refers to itself, which would never end"
            )
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
    if sizes[id(root)] > MAX_YAML_NODES:
        return (
            f"the YAML expands to more than {MAX_YAML_NODES:,} values once its aliases"
            " (*name) are expanded; refusing it (write repeated parts out, or alias less)"
        )
    return None


def _load_yaml(text: str, source: Path) -> object:
    """Parse ``text`` with :class:`_Loader`, refusing what would expand without bound."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problem = _expansion_problem(node)
        if problem is not None:
            raise ConfigError([problem], source=source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], source=source) from None
    except RecursionError:
        # PyYAML composes nested collections recursively.
        raise ConfigError(["invalid YAML: nested too deeply"], source=source) from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        text = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
        context = exc.context_mark
        if exc.context and context is not None and context.line != mark.line:
            text += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
        return text
    return f"invalid YAML: {exc}"


def _resolve(path: Path, base_dir: Path) -> Path:
    if path == IN_MEMORY or path.is_absolute():
        return path
    return base_dir / path


def parse_config(
    data: object,
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Config:
    """Validate already-parsed YAML ``data`` and build a :class:`Config`.

    ``None`` (an empty document) gives all defaults. ``${VAR}`` references are filled
    from ``environ`` (default: ``os.environ``). Relative paths are resolved against
    ``base_dir``. ``source`` is only used in messages and as ``Config.source``. Raises
    :class:`ConfigError` listing every problem found.
    """
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"the top level must be a mapping, got {describe(data)}"], source=source)
    run = _Pass(environ=environ)
    tree = _interpolate(data, (), run)
    interpolation_problems = run.problems
    problems = list(interpolation_problems)
    document: Document | None = None
    try:
        document = converter.structure(tree, Document)
    except Exception as exc:
        # A value whose interpolation failed still holds its raw "${...}" text; its
        # type errors would only repeat the problem already reported.
        unresolved = {path for path, _ in interpolation_problems}
        problems.extend(
            (path, message)
            for path, message, about_value in walk(exc, ())
            if not (about_value and any(path[: len(bad)] == bad for bad in unresolved))
        )
    if problems or document is None:
        rendered = [
            f"{render_path(path)}: {message}" if path else message for path, message in problems
        ]
        raise ConfigError(rendered, source=source)

    base_dir = base_dir.absolute()
    return Config(
        service=document.service,
        state=StateConfig(path=_resolve(document.state.path, base_dir)),
        plugin_roots=tuple(_resolve(root, base_dir) for root in document.plugin_roots),
        api=document.api,
        plugins=document.plugins,
        routes=document.routes,
        pipelines=document.pipelines,
        callbacks=document.callbacks,
        webhooks=document.webhooks,
        secret_references=tuple(run.references),
        source=source,
        base_dir=base_dir,
    )


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, interpolate and validate the YAML configuration file at ``path``.

    Relative paths inside the file are resolved against the file's directory. Raises
    :class:`ConfigError` (whose message starts with ``path``) if the file is missing or
    unreadable, is not valid YAML (the message names the line), would expand through
    aliases to more than :data:`MAX_YAML_NODES` values, or does not validate.
    """
    given = Path(path)
    try:
        text = given.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=given) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not valid UTF-8 ({exc.reason})"], source=given) from None
    except OSError as exc:
        raise ConfigError([exc.strerror or str(exc)], source=given) from None
    data = _load_yaml(text, given)
    absolute = given.absolute()
    try:
        config = parse_config(data, base_dir=absolute.parent, environ=environ, source=absolute)
    except ConfigError as exc:
        # Name the file the way the user did in messages.
        raise ConfigError(exc.problems, source=given) from None
    return config
