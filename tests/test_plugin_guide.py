"""The first plugin of docs/PLUGINS.md works exactly as written there.

The files are taken from the document itself (each fenced block announced by an
``<!-- dir/file -->`` comment), written into a plugin root and run by a real
daemon, so the guide cannot drift from what the daemon does: the result, the
state carried to the next job, the stderr line and the log entry as messages,
and the input schema refusing a bad payload.
"""

from __future__ import annotations

import re
import shutil
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import BUNDLED_PLUGINS, DaemonFactory

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "PLUGINS.md"
_BLOCK = re.compile(r"<!-- (?P<path>[\w.-]+/[\w.-]+) -->\n```\w*\n(?P<body>.*?)\n```", re.S)


def guide_files() -> dict[str, str]:
    """Every announced block of the guide, by its relative path."""
    return {m["path"]: m["body"] + "\n" for m in _BLOCK.finditer(GUIDE.read_text())}


def write_plugins(root: Path) -> None:
    files = guide_files()
    # The Python variant shares the manifest but for its name and entrypoint.
    manifest = yaml.safe_load(files["greet/manifest.yaml"])
    manifest.update(name="greet-py", entrypoint="run.py")
    files["greet-py/manifest.yaml"] = yaml.safe_dump(manifest)
    for relative, body in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        if body.startswith("#!"):
            path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_guide_announces_both_plugins() -> None:
    assert set(guide_files()) == {"greet/manifest.yaml", "greet/index.js", "greet-py/run.py"}


async def greet_twice(daemon: DaemonFactory, tmp_path: Path, plugin: str) -> None:
    root = tmp_path / "plugins"
    write_plugins(root)
    d = await daemon(
        {
            "plugin_roots": [str(BUNDLED_PLUGINS), str(root)],
            "plugins": {plugin: {"config": {"greeting": "Hi"}}},
        }
    )
    async with httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=60) as client:

        async def greet(name: Any) -> httpx.Response:
            return await client.post(f"/trigger/{plugin}/handle", json={"payload": {"name": name}})

        refused = await greet(5)
        assert refused.status_code == 400
        assert refused.json()["error"] == "payload.name: 5 is not of type 'string'"

        jobs = []
        for name in ("Ada", "Grace"):
            accepted = await greet(name)
            assert accepted.status_code == 202, accepted.text
            r = await client.get(
                f"/job/{accepted.json()['job_id']}", params={"wait": "30s", "include": "messages"}
            )
            jobs.append(r.json())
    first, second = jobs
    assert first["status"] == "succeeded", first
    assert first["result"]["result"] == {"greeting": "Hi, Ada!"}
    assert first["result"]["events"] == [
        {"type": "greet.sent", "payload": {"name": "Ada", "greeting": "Hi, Ada!"}}
    ]
    said = [(m["kind"], m.get("level"), m["text"]) for m in first["messages"]]
    assert ("stderr", None, "greeting Ada") in said
    assert said[-2:] == [
        ("log", "info", "1 greeted so far"),
        ("system", None, "finished: succeeded"),
    ]
    # The state the first job stored reached the second.
    assert second["result"]["state_updates"] == {"greeted": 2}


async def test_the_node_plugin_of_the_guide_runs(daemon: DaemonFactory, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        # .ci/run installs Node.js, so CI always runs this; a machine without it
        # still runs the Python variant below.
        pytest.skip("node is not installed")
    await greet_twice(daemon, tmp_path, "greet")


async def test_the_python_plugin_of_the_guide_runs(daemon: DaemonFactory, tmp_path: Path) -> None:
    await greet_twice(daemon, tmp_path, "greet-py")
