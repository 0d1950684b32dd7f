"""The plugin system: manifests, discovery, the Ductile v2 protocol, and processes.

Plugins are executables in any language that speak Ductile protocol v2: one JSON
request on stdin, one JSON response on stdout, one process per job.
"""

from .manifest import CommandSpec, CommandType, Manifest, ManifestError, load_manifest
from .process import Limits, ProcessControl, run_plugin
from .protocol import (
    EXIT_CONFIG,
    PROTOCOL_VERSION,
    Outcome,
    OutcomeKind,
    ProcessResult,
    Response,
    TerminationReason,
    decide_outcome,
    decode_response,
    encode_request,
)
from .registry import Discovery, SkippedPlugin, discover

__all__ = [
    "EXIT_CONFIG",
    "PROTOCOL_VERSION",
    "CommandSpec",
    "CommandType",
    "Discovery",
    "Limits",
    "Manifest",
    "ManifestError",
    "Outcome",
    "OutcomeKind",
    "ProcessControl",
    "ProcessResult",
    "Response",
    "SkippedPlugin",
    "TerminationReason",
    "decide_outcome",
    "decode_response",
    "discover",
    "encode_request",
    "load_manifest",
    "run_plugin",
]
