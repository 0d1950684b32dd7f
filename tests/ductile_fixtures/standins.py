"""Stand-ins for Ductile's own plugins, written by the tests that run Ductile's pipelines.

Each is a short re-implementation, not a copy, of the plugin of the same name: it reads
exactly the request fields the real one reads (``event.payload`` first, then
``context``, then ``config``), fails where the real one fails with the same message,
answers with the same response and event shapes, and does the same side effects where
they are cheap here (git against a local bare repository, the POST to a webhook, the
file written).  The real plugins live in ``mattjoyce/ductile-plugins`` (``<name>/run.py``)
and, for ``file_handler``, in ``mattjoyce/senechal-gw`` (``plugins/file_handler/run.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ductile_fixtures import write_plugin

#: The helpers every stand-in shares: how the real plugins pick a field and answer.
_COMMON = """
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

request = read_request(RECORD)
command = request.get("command") or "handle"
config = request.get("config") or {}
state = request.get("state") or {}
event = request.get("event") or {}
payload = event.get("payload") or {}
context = request.get("context") or {}


def pick(key, default=None):
    # payload first, then context, skipping None and "" (every plugin's pick()).
    for source in (payload, context):
        if key in source and source[key] not in (None, ""):
            return source[key]
    return default


def answer(response):
    print(json.dumps(response))
    sys.exit(0)


def fail(message, retry=False):
    answer({"status": "error", "error": message, "retry": retry,
            "logs": [{"level": "error", "message": message}]})


def git(*args, cwd=None, env=None):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)


if command == "health":
    answer({"status": "ok", "result": NAME + " healthy"})
"""


def _write(root: Path, name: str, body: str, records: Path, commands: list[dict[str, Any]]) -> None:
    write_plugin(
        root,
        name,
        f"NAME = {name!r}\n" + _COMMON + body,
        records=records,
        commands=commands,
    )


def _handle(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "handle", "type": "write"}, *extra, {"name": "health", "type": "read"}]


# git_repo_sync/run.py: clone or fetch one repository named by the event.
_GIT_REPO_SYNC = """
def field(name):
    return payload.get(name) or context.get(name)

owner, repo_name = field("owner"), field("repo_name")
clone_url, ssh_url = field("clone_url"), field("ssh_url")
default_branch = field("default_branch") or "main"
clone_dir = field("clone_dir") or "~/github.mattjoyce"
if not owner or not repo_name or not (clone_url or ssh_url):
    fail("missing required payload fields (owner, repo_name, clone_url/ssh_url)")
repo_dir = Path(os.path.expanduser(clone_dir)) / owner / repo_name
repo_dir.parent.mkdir(parents=True, exist_ok=True)
action, new_commits, commit_count, before_sha, after_sha = "fetched", False, 0, None, None
remote_ref = "origin/" + default_branch
if (repo_dir / ".git").exists():
    before_sha = git("rev-parse", remote_ref, cwd=repo_dir).stdout.strip() or None
    fetched = git("-C", str(repo_dir), "fetch", "--prune", "--quiet")
    if fetched.returncode != 0:
        fail("fetch failed: " + fetched.stderr.strip(), retry=True)
    after_sha = git("rev-parse", remote_ref, cwd=repo_dir).stdout.strip() or None
    new_commits = bool(before_sha and after_sha and before_sha != after_sha)
    if new_commits:
        counted = git("rev-list", "--count", f"{before_sha}..{after_sha}", cwd=repo_dir)
        commit_count = int(counted.stdout.strip() or 0)
        git("merge", "--ff-only", remote_ref, cwd=repo_dir)
elif repo_dir.exists():
    fail(f"path exists but is not a git repo: {repo_dir}")
else:
    action, new_commits = "cloned", True
    cloned = git("clone", "--quiet", clone_url or ssh_url, str(repo_dir))
    if cloned.returncode != 0:
        fail("clone failed: " + cloned.stderr.strip(), retry=True)
    after_sha = git("rev-parse", remote_ref, cwd=repo_dir).stdout.strip() or None
summary = f"Repo sync {action}: {owner}/{repo_name}"
answer({"status": "ok", "result": summary, "events": [{
    "type": "git_repo_sync.completed",
    "payload": {
        "message": summary, "text": summary, "result": summary, "owner": owner,
        "repo_name": repo_name, "path": str(repo_dir), "action": action,
        "new_commits": new_commits, "commit_count": commit_count,
        "before_sha": before_sha or "", "after_sha": after_sha or "",
        "default_branch": default_branch, "clone_url": clone_url or "",
        "ssh_url": ssh_url or "",
    },
}]})
"""

# repo_policy/run.py: a README that links the changelog, and a CHANGELOG.md.
_REPO_POLICY = """
raw = pick("path") or pick("repo_path")
if raw:
    repo_path = Path(os.path.expanduser(raw))
elif pick("owner") and pick("repo_name") and pick("clone_dir"):
    repo_path = Path(os.path.expanduser(pick("clone_dir"))) / pick("owner") / pick("repo_name")
else:
    fail("missing repo path (path/repo_path or owner+repo_name+clone_dir)")
if not repo_path.exists():
    fail(f"repo path does not exist: {repo_path}")
repo_name = pick("repo_name") or repo_path.name
heading = config.get("changelog_heading", "Changelog")
changed = []
readme = repo_path / "README.md"
section = f"## {heading}\\nSee [CHANGELOG.md](CHANGELOG.md).\\n"
if not readme.exists():
    readme.write_text(f"# {config.get('readme_heading', repo_name)}\\n\\n{section}")
    changed.append("README.md")
elif not any(mark in readme.read_text() for mark in ("CHANGELOG.md", "Changelog", "CHANGELOG")):
    readme.write_text(readme.read_text().rstrip() + "\\n\\n" + section)
    changed.append("README.md")
changelog = repo_path / "CHANGELOG.md"
if not changelog.exists():
    changelog.write_text(f"# {heading}\\n\\n")
    changed.append("CHANGELOG.md")
summary = "repo_policy: updated " + ", ".join(changed) if changed else "repo_policy: no changes"
answer({"status": "ok", "result": summary, "events": [{
    "type": "repo_policy.completed",
    "payload": {"repo_path": str(repo_path), "repo_name": repo_name,
                "changed": bool(changed), "files_changed": changed},
}]})
"""

# changelog_microblog/run.py: a dated entry from the week's substantive commits,
# written by fabric, after resetting the clone to origin.
_CHANGELOG_MICROBLOG = """
VAGUE = {"fix", "fixes", "update", "updates", "chore", "cleanup", "refactor", "lint",
         "format", "docs", "readme", "wip"}

def vague(message):
    words = message.lower().replace("/", " ").split()
    return (not words or words[0].startswith("merge") or len(words) < 3
            or (words[0] in VAGUE and len(words) <= 3))

fabric_bin = config.get("fabric_bin", "fabric")
pattern = config.get("fabric_pattern", "ductile-microblog-changelog")
raw = pick("repo_path") or pick("path")
if not raw:
    fail("missing repo_path/path")
repo_path = Path(os.path.expanduser(raw))
if not (repo_path / ".git").exists():
    fail(f"repo path invalid: {repo_path}")
repo_name = pick("repo_name") or repo_path.name
ssh_url, clone_url = pick("ssh_url"), pick("clone_url")
branch = pick("default_branch") or "main"
if git("fetch", "origin", cwd=repo_path).returncode != 0:
    fail("git fetch failed", retry=True)
reset = git("reset", "--hard", "origin/" + branch, cwd=repo_path)
if reset.returncode != 0:
    fail("git reset failed: " + reset.stderr.strip(), retry=True)
now = dt.datetime.now(dt.timezone.utc)
start = now - dt.timedelta(days=7)
last = git("log", "--format=%cI", "-n", "1", "--", "CHANGELOG.md", cwd=repo_path).stdout.split()
if last and dt.datetime.fromisoformat(last[0]) > start:
    start = dt.datetime.fromisoformat(last[0])
since = start.isoformat()
logged = git("log", "--since", since, "--pretty=%s", "--reverse", cwd=repo_path).stdout
messages = [m.strip() for m in logged.splitlines()
            if m.strip() and "[ductile-changelog]" not in m.lower() and not vague(m)]

def completed(changed, entry_date, entry_text, result):
    response = {"status": "ok", "result": result, "events": [{
        "type": "changelog_microblog.completed",
        "payload": {"repo_path": str(repo_path), "repo_name": repo_name, "changed": changed,
                    "entry_date": entry_date, "entry_text": entry_text, "since": since,
                    "ssh_url": ssh_url or "", "clone_url": clone_url or ""},
    }]}
    if changed:
        response["state_updates"] = {"last_run": now.isoformat(), "last_changelog_at": entry_date}
    answer(response)

if not messages:
    completed(False, now.date().isoformat(), "", "changelog_microblog: no substantive commits")
text = f"Repo: {repo_name}\\nCommit messages:\\n" + "".join(f"- {m}\\n" for m in messages)
try:
    ran = subprocess.run([fabric_bin, "--pattern", pattern], input=text, capture_output=True,
                         text=True, timeout=120)
except FileNotFoundError:
    fail(f"fabric binary not found: {fabric_bin}")
if ran.returncode != 0:
    fail("fabric failed: " + ran.stderr.strip(), retry=True)
lines = [line.strip() for line in ran.stdout.strip().splitlines() if line.strip()]
entry_text = "\\n".join(line if line[0] in "-*" else "- " + line for line in lines)
if not entry_text:
    completed(False, now.date().isoformat(), "", "changelog_microblog: no usable output")
entry = f"## {now.date().isoformat()}\\n{entry_text}\\n\\n"
changelog = repo_path / "CHANGELOG.md"
content = changelog.read_text() if changelog.exists() else "# Changelog\\n\\n"
head = content.splitlines(keepends=True)
if content.strip() and head[0].startswith("#"):
    at = 1
    while at < len(head) and not head[at].strip():
        at += 1
    updated = "".join(head[:at]) + entry + "".join(head[at:])
else:
    updated = "# Changelog\\n\\n" + entry + content
changelog.write_text(updated)
completed(True, now.date().isoformat(), entry_text, "changelog_microblog: updated CHANGELOG.md")
"""

# git_commit_push/run.py: commit README.md/CHANGELOG.md as ductile and push.
_GIT_COMMIT_PUSH = """
raw = pick("repo_path") or pick("path")
if not raw:
    fail("missing repo_path/path")
repo_path = Path(os.path.expanduser(raw))
if not (repo_path / ".git").exists():
    fail(f"repo path invalid: {repo_path}")
repo_name = pick("repo_name") or repo_path.name
branch = pick("default_branch") or "main"
status = git("status", "--porcelain", cwd=repo_path)
if status.returncode != 0:
    fail("git status failed: " + status.stderr.strip(), retry=True)
lines = [line for line in status.stdout.splitlines() if line.strip()]
if {line[3:].strip() for line in lines} - {"README.md", "CHANGELOG.md"}:
    answer({"status": "ok", "result": "git_commit_push: skipped dirty working tree", "events": []})
if not lines:
    answer({"status": "ok", "result": "git_commit_push: no changes to commit", "events": []})
current = git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo_path).stdout.strip()
name = config.get("author_name", "ductile")
email = config.get("author_email", "ductile@local")
env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
       "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
if git("add", "README.md", "CHANGELOG.md", cwd=repo_path, env=env).returncode != 0:
    fail("git add failed")
if not git("diff", "--cached", "--name-only", cwd=repo_path).stdout.strip():
    answer({"status": "ok", "result": "git_commit_push: no staged changes", "events": []})
message = config.get("commit_message", "Update changelog [ductile-changelog]")
committed = git("commit", "-m", message, cwd=repo_path, env=env)
if committed.returncode != 0:
    fail("git commit failed: " + committed.stderr.strip())
sha = git("rev-parse", "HEAD", cwd=repo_path).stdout.strip()
pushed = git("push", "origin", current or branch, cwd=repo_path)
if pushed.returncode != 0:
    fail("git push failed: " + pushed.stderr.strip(), retry=True)
answer({"status": "ok", "result": f"git_commit_push: pushed {repo_name}", "events": [{
    "type": "git_commit_push.completed",
    "payload": {"repo_path": str(repo_path), "repo_name": repo_name, "changed": True,
                "commit_sha": sha},
}]})
"""

# discord_notify/run.py: post message/content (or title, template, default, result).
_DISCORD_NOTIFY = """
import re
import urllib.request

if command == "poll" and not any(payload.get(k) for k in ("message", "content", "title")):
    if str(config.get("poll_message") or "").strip():
        payload = {**payload, "message": str(config["poll_message"]).strip()}
webhook_url = str(config.get("webhook_url") or "").strip()
if not webhook_url:
    fail("No webhook_url configured. Add to plugin config.")

def first(*keys):
    for key in keys:
        for source in (payload, context):
            if key in source and source[key] not in (None, ""):
                return source[key]
    return None

content, title = first("message", "content"), first("title")
template = str(config.get("message_template") or "").strip()
if not content and not title and template:
    def lookup(match):
        value = payload
        for part in match.group(1).split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else str(value)
    content = re.sub(r"\\{([^}]+)\\}", lookup, template).strip() or None
if not content and not title:
    content = str(config.get("default_message") or "").strip() or None
if not content and not title:
    content = first("result")
if not content and not title:
    fail("No message content found in payload (tried: message, content, result, title,"
         " message_template, default_message)")
text = f"**{title}**\\n{content}" if title and content else str(title or content)
if len(text) > 2000:
    text = text[:1997] + "..."
body = {"content": text,
        "username": first("username") or str(config.get("default_username") or "Ductile")}
if str(config.get("default_avatar_url") or "").strip():
    body["avatar_url"] = str(config["default_avatar_url"]).strip()
posted = urllib.request.Request(webhook_url, data=json.dumps(body).encode(), method="POST",
                                headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(posted, timeout=int(config.get("request_timeout_seconds", 10))):
        pass
except Exception as exc:
    fail(f"Failed to post to Discord: {type(exc).__name__}: {exc}", retry=True)
preview = text[:80].replace("\\n", " ")
answer({"status": "ok", "result": f"Discord notified: {preview!r}"})
"""

# fabric/run.py: run the fabric CLI on text, a URL or a prompt.
_FABRIC = """
if command == "poll":
    answer({"status": "ok", "result": "Fabric poll command - no scheduled actions configured"})
text = pick("text") or pick("content")
url, youtube_url, prompt_given = pick("url"), pick("youtube_url"), pick("prompt")
pattern = pick("pattern")
if pattern is None and not (prompt_given and not any([text, url, youtube_url])):
    pattern = config.get("FABRIC_DEFAULT_PATTERN")
prompt = prompt_given or config.get("FABRIC_DEFAULT_PROMPT")
model = pick("model") or config.get("FABRIC_DEFAULT_MODEL")
fabric_bin = config.get("FABRIC_BIN_PATH", "fabric")
if not any([text, url, youtube_url, prompt]):
    fail("Missing input: provide 'text', 'url', 'youtube_url', or 'prompt'")
cmd = [fabric_bin]
for flag, value in (("--pattern", pattern), ("--model", model), ("--scrape_url", url),
                    ("--youtube", youtube_url)):
    if value:
        cmd += [flag, value]
if text:
    stdin = f"{prompt}\\n\\n{text}" if prompt else text
else:
    stdin = prompt or ""
try:
    ran = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
except FileNotFoundError:
    fail(f"Fabric binary not found at '{fabric_bin}'.")
if ran.returncode != 0:
    fail(f"Fabric failed (exit {ran.returncode}): {ran.stderr.strip()}", retry=True)
output = ran.stdout.strip()
out = {"result": output, "pattern": pattern or "", "prompt": prompt or "",
       "model": model or "default", "url": url or "", "youtube_url": youtube_url or "",
       "input_length": len(text) if text else 0, "output_length": len(output)}
for key in ("output_dir", "output_path", "filename", "file_path"):
    if pick(key) not in (None, ""):
        out[key] = pick(key)
parts = [f"pattern={pattern}"] if pattern else []
parts += [f"url={url[:50]}..."] if url else []
parts += [f"youtube={youtube_url[:50]}..."] if youtube_url else []
parts += ["prompt-mode"] if prompt and not (url or youtube_url) else []
summary = "Executed fabric (" + (", ".join(parts) or "text-mode") + ")"
answer({"status": "ok", "result": summary,
        "events": [{"type": "fabric.completed", "payload": out}],
        "state_updates": {"last_run": dt.datetime.now(dt.timezone.utc).isoformat(),
                          "executions_count": state.get("executions_count", 0) + 1,
                          "last_pattern": pattern or "", "last_prompt": prompt or ""}})
"""

# senechal-gw plugins/file_handler/run.py: write (or read) under allowed paths.
_FILE_HANDLER = """
if command == "poll":
    answer({"status": "ok", "result": "file_handler poll (no-op)"})

def allowed(key):
    paths = config.get(key)
    if isinstance(paths, str):
        return [p.strip() for p in paths.split(",") if p.strip()]
    return [str(p).strip() for p in paths or [] if p]

def secure(path, prefixes, operation):
    real = os.path.realpath(path)
    for prefix in prefixes:
        base = os.path.realpath(prefix)
        if real == base or real.startswith(base + os.sep):
            return real
    fail(f"Path not under allowed {operation} prefixes.\\n  Requested: {real}\\n"
         f"  Allowed prefixes: {', '.join(prefixes)}")

action, event_type = pick("action", ""), event.get("type", "")
if action == "read" or event_type == "file.read_request":
    file_path = pick("file_path")
    if not file_path:
        fail("Missing required field 'file_path' in payload")
    prefixes = allowed("allowed_read_paths")
    if not prefixes:
        fail("No allowed_read_paths configured. Add to config.yaml:"
             " plugins.file_handler.config.allowed_read_paths")
    real = secure(file_path, prefixes, "read")
    content = Path(real).read_text(encoding="utf-8")
    size = len(content.encode("utf-8"))
    out = {"file_path": real, "filename": os.path.basename(real), "content": content,
           "text": content, "size_bytes": size}
    for key in ("pattern", "output_dir", "output_path"):
        if pick(key) not in (None, ""):
            out[key] = pick(key)
    answer({"status": "ok", "result": f"Read {size:,} bytes from {os.path.basename(real)}",
            "events": [{"type": "file.read", "payload": out}]})
if not (action == "write" or event_type.startswith("fabric.completed")):
    fail(f"Unknown action '{action}'. Specify 'read' or 'write' in payload.action")
content = pick("result") or pick("content")
if not content:
    fail("Missing required field 'content' or 'result' in payload")
if not isinstance(content, str):
    fail(f"Content must be string, got {type(content).__name__}")
output_path = pick("output_path")
output_dir = pick("output_dir") or config.get("default_output_dir", "").strip() or None
if not output_path and not output_dir:
    fail("Missing required field 'output_path' or 'output_dir' in payload. Or set"
         " plugins.file_handler.config.default_output_dir in your config.")
if not output_path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d_%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in pick("pattern", "report"))
    output_path = os.path.join(output_dir, f"{safe}_{stamp}.md")
prefixes = allowed("allowed_write_paths")
if not prefixes:
    fail("No allowed_write_paths configured. Add to config.yaml:"
         " plugins.file_handler.config.allowed_write_paths")
real = secure(output_path, prefixes, "write")
Path(real).parent.mkdir(parents=True, exist_ok=True)
Path(real).write_text(content, encoding="utf-8")
size = len(content.encode("utf-8"))
answer({"status": "ok", "result": f"Wrote {size:,} bytes to {os.path.basename(real)}",
        "events": [{"type": "file.written", "payload": {"file_path": real, "size_bytes": size}}]})
"""

_INPUT = {"message": "string", "content": "string", "title": "string", "username": "string"}


def write_standins(root: Path, records: Path) -> None:
    """Write the seven stand-ins under ``root``, with the commands their manifests declare."""
    _write(root, "git_repo_sync", _GIT_REPO_SYNC, records, _handle())
    _write(root, "repo_policy", _REPO_POLICY, records, _handle())
    _write(root, "changelog_microblog", _CHANGELOG_MICROBLOG, records, _handle())
    _write(root, "git_commit_push", _GIT_COMMIT_PUSH, records, _handle())
    discord: list[dict[str, Any]] = [
        {"name": "handle", "type": "write", "input_schema": _INPUT},
        {"name": "poll", "type": "write", "input_schema": _INPUT},
        {"name": "health", "type": "read"},
    ]
    _write(root, "discord_notify", _DISCORD_NOTIFY, records, discord)
    fabric_input = {
        key: "string" for key in ("text", "url", "youtube_url", "pattern", "prompt", "model")
    }
    fabric = _handle({"name": "poll", "type": "write"})
    fabric[0]["input_schema"] = fabric_input
    _write(root, "fabric", _FABRIC, records, fabric)
    file_input = {
        key: "string"
        for key in ("action", "file_path", "content", "result", "output_path", "output_dir")
    }
    files = _handle({"name": "poll", "type": "write"})
    files[0]["input_schema"] = file_input
    _write(root, "file_handler", _FILE_HANDLER, records, files)


def write_fabric_stub(bin_dir: Path, calls: Path) -> Path:
    """A ``fabric`` executable: records its arguments and input, answers per mode."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    stub = bin_dir / "fabric"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "text = sys.stdin.read()\n"
        f"with open({str(calls)!r}, 'a') as out:\n"
        "    out.write(json.dumps({'args': args, 'input': text}) + '\\n')\n"
        "if '--scrape_url' in args:\n"
        "    url = args[args.index('--scrape_url') + 1]\n"
        "    print('# Summary\\n\\nThe page at ' + url + ' says hello.')\n"
        "else:\n"
        "    print('Added the widget parser\\n- Imported the widget tool')\n"
    )
    stub.chmod(0o755)
    return stub
