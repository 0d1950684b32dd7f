"""Plugin discovery: find every ``manifest.yaml`` under the configured roots.

Discovery never raises for a bad plugin. One broken manifest must not keep the daemon
(and every healthy plugin) from starting, so each problem becomes a `SkippedPlugin`
and a WARNING log line naming the file and the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path

import attrs

from .manifest import Manifest, ManifestError, load_manifest

__all__ = ["MANIFEST_FILENAME", "Discovery", "SkippedPlugin", "UnusableRoot", "discover"]

logger = logging.getLogger("chamberlain.plugins")

MANIFEST_FILENAME = "manifest.yaml"

_LOG_EXTRA = {"component": "plugins"}


@attrs.frozen(kw_only=True)
class SkippedPlugin:
    """A manifest that was found but not loaded, and why."""

    path: Path
    reason: str


@attrs.frozen(kw_only=True)
class UnusableRoot:
    """A plugin root that could not be searched: ``reason`` says what it is instead."""

    path: Path
    reason: str


@attrs.frozen(kw_only=True)
class Discovery:
    """What `discover` found: loaded manifests by plugin name, and the rejects."""

    plugins: Mapping[str, Manifest]
    skipped: tuple[SkippedPlugin, ...]
    unusable_roots: tuple[UnusableRoot, ...] = ()


def discover(roots: Sequence[Path], *, trusted_owners: Collection[int] = ()) -> Discovery:
    """Load every plugin found under ``roots``, in a deterministic order.

    Plugins owned by root or the daemon's user are trusted, and so are those owned by
    a uid in ``trusted_owners`` (``service.trusted_plugin_owners``); see
    :func:`~chamberlain.plugins.manifest.load_manifest` for every trust rule.

    Each root is walked recursively in sorted order. A directory holding a
    ``manifest.yaml`` is a plugin and is not descended into further (plugins may carry
    vendored trees with manifests of their own). Hidden directories (``.git``,
    ``.venv``...) are not searched. Directory symlinks are followed, but each real
    directory is visited at most once, which breaks symlink cycles and makes
    overlapping roots harmless.

    When two plugins share a name, the first one found (by root order, then path
    order) wins and the later one is skipped with a reason naming the winner. A root
    that does not exist, or is not a directory, is logged and listed in
    ``unusable_roots`` (binding the plugins makes that a configuration error).
    """
    plugins: dict[str, Manifest] = {}
    origins: dict[str, Path] = {}
    skipped: list[SkippedPlugin] = []
    unusable: list[UnusableRoot] = []
    visited: set[tuple[int, int]] = set()

    def skip(path: Path, reason: str, plugin: str | None = None) -> None:
        extra = dict(_LOG_EXTRA)
        if plugin is not None:
            extra["plugin"] = plugin
        logger.warning("skipping plugin manifest %s: %s", path, reason, extra=extra)
        skipped.append(SkippedPlugin(path=path, reason=reason))

    for root in roots:
        root = Path(root)
        if not root.is_dir():
            reason = "does not exist" if not root.exists() else "is not a directory"
            logger.warning("plugin root %s %s; ignoring it", root, reason, extra=_LOG_EXTRA)
            unusable.append(UnusableRoot(path=root, reason=reason))
            continue
        for manifest_path in _manifest_files(root, visited):
            try:
                manifest = load_manifest(manifest_path, trusted_owners=trusted_owners)
            except ManifestError as exc:
                skip(manifest_path, exc.reason)
                continue
            winner = origins.get(manifest.name)
            if winner is not None:
                skip(
                    manifest_path,
                    f"duplicate plugin name {manifest.name!r}: already provided by {winner}",
                    manifest.name,
                )
                continue
            plugins[manifest.name] = manifest
            origins[manifest.name] = manifest_path
            logger.debug(
                "loaded plugin %s %s from %s",
                manifest.name,
                manifest.version,
                manifest_path,
                extra={**_LOG_EXTRA, "plugin": manifest.name},
            )
    return Discovery(plugins=plugins, skipped=tuple(skipped), unusable_roots=tuple(unusable))


def _manifest_files(root: Path, visited: set[tuple[int, int]]) -> Iterator[Path]:
    """Yield manifest paths under ``root``, depth first in sorted order."""
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            info = directory.stat()
        except OSError as exc:
            logger.warning("cannot read %s: %s", directory, exc, extra=_LOG_EXTRA)
            continue
        key = (info.st_dev, info.st_ino)
        if key in visited:
            continue
        visited.add(key)

        manifest = directory / MANIFEST_FILENAME
        if manifest.is_file():
            yield manifest
            continue

        try:
            with os.scandir(directory) as entries:
                children = sorted(
                    Path(entry.path)
                    for entry in entries
                    if not entry.name.startswith(".") and _is_dir(entry)
                )
        except OSError as exc:
            logger.warning("cannot list %s: %s", directory, exc, extra=_LOG_EXTRA)
            continue
        # Reversed so the stack pops them in sorted order.
        stack.extend(reversed(children))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False
