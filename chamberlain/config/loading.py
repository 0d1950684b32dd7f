"""Reading a configuration: files, YAML, ``${VAR}`` interpolation, then structuring.

A configuration is one file, or a directory standing for its ``config.yaml``; a
file's ``include:`` adds more files (or directories of them), merged in the order
read, and its ``environment_vars.include`` adds ``KEY=value`` files whose variables
fill ``${VAR}`` where the environment has none. Each value remembers the file that
wrote it, so a problem found after merging names that file. Before interpolation,
Ductile's keys are rewritten into Chamberlain's (:mod:`chamberlain.config.ductile`).

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
the only module that knows files are involved; the rest of the package works on
values.
"""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs
import yaml

from chamberlain.config.checks import RESERVED_REPOSITORY
from chamberlain.config.converter import converter, render_path, walk
from chamberlain.config.ductile import translate
from chamberlain.config.problems import ConfigError, Invalid, YamlPath, describe
from chamberlain.config.references import (
    ESCAPED,
    MARKER,
    REFERENCE_PATTERN,
    SECRET_PLACES_SHOWN,
    SecretReference,
    name_problem,
    takes_secrets,
)
from chamberlain.config.sections import IN_MEMORY, Config, Document, RepositoryConfig, StateConfig
from chamberlain.config.values import Interpolated, name_parser

_repository_name = name_parser("repository name")

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

    ``None`` (an empty document) gives all defaults. Ductile's keys are read first
    (:mod:`chamberlain.config.ductile`). ``${VAR}`` references are filled from
    ``environ`` (default: ``os.environ``). Relative paths are resolved against
    ``base_dir``. ``source`` is only used in messages and as ``Config.source``. Raises
    :class:`ConfigError` listing every problem found.
    """
    return _parse(data, base_dir=base_dir, environ=environ, source=source, origins={})


def _parse(
    data: object,
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None,
    source: Path | None,
    origins: Mapping[YamlPath, Path],
) -> Config:
    environ = os.environ if environ is None else environ
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"the top level must be a mapping, got {describe(data)}"], source=source)
    problems: list[tuple[YamlPath, str]] = [
        ((key,), f"{key} is only read from a file (chamberlain start --config FILE)")
        for key in _FILE_KEYS
        if key in data
    ]
    translation = translate({key: value for key, value in data.items() if key not in _FILE_KEYS})
    problems.extend(translation.problems)
    run = _Pass(environ=environ)
    tree = _interpolate(translation.tree, (), run)
    interpolation_problems = run.problems
    problems.extend(interpolation_problems)
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
            and not any(path[: len(hidden)] == hidden for hidden in translation.hidden)
        )
    if problems or document is None:
        rendered = [_render_problem(path, message, origins, source) for path, message in problems]
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
        instances=document.instances,
        remote_ingress=document.remote_ingress,
        workspaces=document.workspaces,
        repositories=document.repositories,
        mcp=document.mcp,
        secret_references=tuple(run.references),
        warnings=translation.warnings,
        source=source,
        base_dir=base_dir,
    )


def _render_problem(
    path: YamlPath, message: str, origins: Mapping[YamlPath, Path], source: Path | None
) -> str:
    line = f"{render_path(path)}: {message}" if path else message
    # Which file of an include: set wrote the value: the longest path it set.
    for length in range(len(path), 0, -1):
        origin = origins.get(path[:length])
        if origin is not None:
            if source is not None and origin != source.absolute():
                shown = origin
                if origin.is_relative_to(source.absolute().parent):
                    shown = origin.relative_to(source.absolute().parent)
                return f"in {shown}: {line}"
            break
    return line


def parse_repository(name: object, data: object, *, path: YamlPath = ()) -> RepositoryConfig:
    """Repository ``name``'s entry given at run time (``POST /repositories``), by the rules
    of the file's; :class:`ConfigError` naming each problem's path under ``path``.

    Nothing is interpolated: a ``${VAR}`` of the daemon's environment is no caller's
    to read, and a ``${secret:name}`` token stays a reference, as in the file.
    """
    try:
        _repository_name(name)
        if name == RESERVED_REPOSITORY:
            raise Invalid(f"{name!r} is reserved (POST /repositories/sync syncs them all)")
    except Invalid as exc:
        raise ConfigError([f"{render_path((*path, 'name'))}: {exc}"]) from None
    if not isinstance(data, Mapping):
        raise ConfigError([f"{render_path(path) or 'the entry'}: expected a mapping"])
    try:
        return converter.structure(dict(data), RepositoryConfig)
    except Exception as exc:
        problems = [
            f"{render_path(where)}: {message}" if where else message
            for where, message, _ in walk(exc, path)
        ]
        raise ConfigError(problems or [str(exc)]) from None


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read, interpolate and validate the YAML configuration at ``path``.

    ``path`` is a file, or a directory holding ``config.yaml`` (Ductile's directory
    mode). The file's ``include:`` list names more files, or directories whose
    ``*.yaml`` files are all read, relative to the file naming them; they are merged
    in order (see :func:`_merge`). ``environment_vars.include`` names ``KEY=value``
    files whose variables fill ``${VAR}`` where the environment has none. Relative
    paths are resolved against the directory of the first file. Raises
    :class:`ConfigError` (whose message starts with ``path``; a problem of an included
    file names that file) if a file is missing or unreadable, is not valid YAML (the
    message names the line), would expand through aliases to more than
    :data:`MAX_YAML_NODES` values, includes itself, or does not validate.
    """
    given = Path(path)
    if given.is_dir():
        if not (given / "config.yaml").is_file():
            raise ConfigError(["a directory was given, but it holds no config.yaml"], source=given)
        given = given / "config.yaml"
    environ = dict(os.environ if environ is None else environ)
    tree: dict[str, Any] = {}
    origins: dict[YamlPath, Path] = {}
    _gather(given, given, environ=environ, tree=tree, origins=origins)
    absolute = given.absolute()
    try:
        config = _parse(
            tree, base_dir=absolute.parent, environ=environ, source=absolute, origins=origins
        )
    except ConfigError as exc:
        # Name the file the way the user did in messages.
        raise ConfigError(exc.problems, source=given) from None
    return config


#: Keys the loader reads itself, before the rest of the file is structured.
_FILE_KEYS: Final = ("include", "environment_vars")


def _read_text(path: Path, shown: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(["file not found"], source=shown) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory, not a file"], source=shown) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not valid UTF-8 ({exc.reason})"], source=shown) from None
    except OSError as exc:
        raise ConfigError([exc.strerror or str(exc)], source=shown) from None


def _gather(
    path: Path,
    shown: Path,
    *,
    environ: dict[str, str],
    tree: dict[str, Any],
    origins: dict[YamlPath, Path],
    visiting: tuple[Path, ...] = (),
    seen: set[Path] | None = None,
) -> None:
    """Merge the file at ``path`` and, after it, the files it includes into ``tree``.

    ``visiting`` holds the files whose includes are being read, outermost first;
    ``seen`` every file read so far: as in Ductile, a file is read once only.
    """
    absolute = _normal(path)
    seen = {absolute} if seen is None else seen
    data = _load_yaml(_read_text(path, shown), shown)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError([f"the top level must be a mapping, got {describe(data)}"], source=shown)
    here = absolute.parent
    env_files = _path_list(data, ("environment_vars", "include"), environ, shown)
    for index, env_file in enumerate(env_files):
        _read_env_file(here / env_file, environ, shown, index)
    _merge(
        tree,
        {key: value for key, value in data.items() if key not in _FILE_KEYS},
        (),
        absolute,
        origins,
    )
    for index, include in enumerate(_path_list(data, ("include",), environ, shown)):
        target = _normal(here / include)
        if target.is_dir():
            files = sorted(_normal(p) for p in target.rglob("*.yaml") if p.is_file())
        elif target.exists():
            files = [target]
        else:
            raise ConfigError([f"include[{index}]: file not found: {target}"], source=shown)
        for file in files:
            if file in (*visiting, absolute):
                chain = " -> ".join(str(p) for p in (*visiting, absolute, file))
                problem = f"include[{index}]: {file} includes itself ({chain})"
                raise ConfigError([problem], source=shown)
            if file in seen:
                problem = f"include[{index}]: {file} is already read (a file is read once)"
                raise ConfigError([problem], source=shown)
            seen.add(file)
            _gather(
                file,
                file,
                environ=environ,
                tree=tree,
                origins=origins,
                visiting=(*visiting, absolute),
                seen=seen,
            )


def _normal(path: Path) -> Path:
    """``path`` made absolute, ``..`` and ``.`` taken out, so one file has one name."""
    return Path(os.path.normpath(path.absolute()))


def _path_list(
    data: Mapping[str, Any], where: tuple[str, ...], environ: Mapping[str, str], shown: Path
) -> list[Path]:
    """The list of paths at ``where`` (``include``), with ``${VAR}`` filled in."""
    if where == ("environment_vars", "include") and "environment_vars" in data:
        section = data["environment_vars"]
        if not isinstance(section, Mapping):
            problem = f"environment_vars: expected a mapping, got {describe(section)}"
            raise ConfigError([problem], source=shown)
        extra = sorted(str(key) for key in section if key != "include")
        if extra:
            raise ConfigError(
                [f"environment_vars.{key}: unknown key (expected: include)" for key in extra],
                source=shown,
            )
    value: object = data
    for key in where:
        value = value.get(key) if isinstance(value, Mapping) else None
    if value is None:
        return []
    name = ".".join(where)
    if not isinstance(value, list):
        problem = f"{name}: expected a list of paths, got {describe(value)}"
        raise ConfigError([problem], source=shown)
    run = _Pass(environ=environ)
    paths: list[Path] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            run.problems.append(((*where, index), f"expected a path, got {describe(item)}"))
            continue
        paths.append(Path(str(_interpolate_string(item, (*where, index), run))).expanduser())
    if run.problems:
        raise ConfigError(
            [f"{render_path(at)}: {message}" for at, message in run.problems], source=shown
        )
    return paths


def _read_env_file(path: Path, environ: dict[str, str], shown: Path, index: int) -> None:
    """Add the ``KEY=value`` lines of ``path`` to ``environ``, as Ductile does.

    Blank lines and ``#`` comments are skipped, ``export`` is allowed, one pair of
    matching quotes around a value is taken off, and a variable already set is kept.
    """
    where = f"environment_vars.include[{index}]"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "file not found" if isinstance(exc, FileNotFoundError) else str(exc)
        raise ConfigError([f"{where}: {path}: {reason}"], source=shown) from None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            raise ConfigError([f"{where}: {path}: line {number}: expected KEY=value"], source=shown)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        environ.setdefault(key, value)


def _merge(
    into: dict[str, Any],
    data: Mapping[str, Any],
    path: YamlPath,
    origin: Path,
    origins: dict[YamlPath, Path],
) -> None:
    """Merge one file's ``data`` into ``into``, recording which file set each path.

    Mappings merge key by key and a later file's value wins, lists are appended (API
    tokens, plugin roots, routes, pipelines, webhook endpoints), and a plugin's
    settings are replaced as a whole, as in Ductile, so one file owns each plugin.
    """
    for key, value in data.items():
        here = (*path, str(key))
        present = into.get(key)
        if isinstance(present, dict) and isinstance(value, Mapping) and path != ("plugins",):
            _merge(present, value, here, origin, origins)
        elif isinstance(present, list) and isinstance(value, list):
            for item in value:
                origins[(*here, len(present))] = origin
                present.append(item)
        else:
            for stale in [p for p in origins if len(p) > len(here) and p[: len(here)] == here]:
                del origins[stale]
            into[key] = dict(value) if isinstance(value, Mapping) else value
            if isinstance(value, list):
                into[key] = list(value)
            origins[here] = origin
