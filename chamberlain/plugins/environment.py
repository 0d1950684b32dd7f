"""The environment a plugin process runs with: an allow-list, never the daemon's own.

The daemon's environment holds what it must keep to itself (``CHAMBERLAIN_API_KEY``,
``CHAMBERLAIN_SECRET_KEY``, which opens every secret of the registry, the tokens a
config interpolates, whatever the service manager adds), and a plugin that prints
its environment would hand all of it to anyone allowed to read the job.
So a plugin gets only:

* :data:`INHERITED` and every ``LC_*`` variable from the daemon's environment, which
  programs need to run at all (find executables, a home, a locale, a time zone);
* the daemon variables its ``plugins.<name>.env_passthrough`` names, let through on
  purpose;
* its ``plugins.<name>.env`` values, which win over both; a value may name a secret
  of the registry (``${secret:name}``), which the Runner resolves for each job
  before it calls :func:`job_environment`;
* the job variables (:data:`JOB_VARIABLES`), set last so nothing can fake them: the
  stray finder (:mod:`chamberlain.plugins.strays`) recognises a job's processes by
  ``CHAMBERLAIN_JOB_ID``.  No config may name a ``CHAMBERLAIN_*`` variable at all.

The process runner adds ``PYTHONUNBUFFERED=1`` on top.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Final

from chamberlain.plugins.strays import JOB_ID_VARIABLE

PLUGIN_VARIABLE: Final = "CHAMBERLAIN_PLUGIN"

#: Set by the daemon for every job.
JOB_VARIABLES: Final = frozenset({JOB_ID_VARIABLE, PLUGIN_VARIABLE})

#: Names with this prefix are the daemon's (the job variables, its own settings such
#: as ``CHAMBERLAIN_API_KEY`` and ``CHAMBERLAIN_SECRET_KEY``): a config may neither
#: set nor pass them through, so no plugin ever inherits one.
RESERVED_PREFIX: Final = "CHAMBERLAIN_"

#: Daemon variables every plugin inherits, besides ``LC_*``.
INHERITED: Final = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER"})

_LOCALE_PREFIX: Final = "LC_"

# POSIX's portable names: what every shell can export and read back.
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_variable_name(name: str) -> str:
    """``name`` if a config may set it or pass it through; raises ValueError otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid environment variable name {name!r}: use letters, digits and '_',"
            " not starting with a digit"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"{name}: {RESERVED_PREFIX}* variables are reserved for the daemon")
    return name


def inherits(name: str, passthrough: Collection[str] = ()) -> bool:
    """True when the daemon's variable ``name`` reaches a plugin that passes ``passthrough``."""
    return name in INHERITED or name.startswith(_LOCALE_PREFIX) or name in passthrough


def job_environment(
    job_id: str,
    plugin: str,
    *,
    env: Mapping[str, str] | None = None,
    passthrough: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one job's process; see the module docstring.

    ``environ`` is the daemon's environment (default: this process's).
    """
    source = os.environ if environ is None else environ
    result = {name: value for name, value in source.items() if inherits(name, passthrough)}
    result.update(env or {})
    result[JOB_ID_VARIABLE] = job_id
    result[PLUGIN_VARIABLE] = plugin
    return result
