#!/usr/bin/env bash
# Appends payload.line to $CHAMBERLAIN_WORKSPACE/notes.txt, then answers with every
# line of it, its workspace (from the environment and from context.workspace), and
# its working directory. payload.fail_once: the first run in a workspace fails
# (leaving its line). payload.gate: waits until that file exists first.
set -u
IFS= read -r request
field() { sed -n "s/.*\"payload\":{[^}]*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$request"; }
context_workspace=$(sed -n 's/.*"context":{[^}]*"workspace":"\([^"]*\)".*/\1/p' <<<"$request")
dir=${CHAMBERLAIN_WORKSPACE:?no workspace}
gate=$(field gate)
if [[ -n $gate ]]; then
  while [[ ! -e $gate ]]; do sleep 0.02; done
fi
printf '%s\n' "$(field line)" >>"$dir/notes.txt"
if [[ $(field fail_once) == true && ! -e $dir/.failed ]]; then
  touch "$dir/.failed"
  printf '{"status":"error","error":"failing once, as asked"}\n'
  exit 0
fi
notes=""
while IFS= read -r line; do notes+="${notes:+,}\"$line\""; done <"$dir/notes.txt"
printf '{"status":"ok","result":{"notes":[%s],"workspace":"%s","context_workspace":"%s","cwd":"%s"},"session":{"n":1}}\n' \
  "$notes" "$dir" "$context_workspace" "$PWD"
