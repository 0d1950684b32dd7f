#!/usr/bin/env bash
# One iteration of a loop job. The payload says what to do:
#   log          a file each request line is appended to (the test reads them back)
#   complete_at  the iteration whose result ends with the line "DONE" (default 3)
#   mode         quote: every result quotes DONE inside a sentence, and never ends
#                with it; fail: iteration fail_at always fails; fail_once: it fails
#                on its first run only
#   gate, gate_at  iteration gate_at (on its first run) waits until the file
#                <gate>.<iteration> exists, so a test can act mid-iteration
set -u
IFS= read -r request
field() { sed -n "s/.*\"payload\":{[^}]*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$request"; }
iteration=$(sed -n 's/.*"iteration":{"number":\([0-9]*\),"max":\([0-9]*\),"attempt":\([0-9]*\).*/\1 \2 \3/p' <<<"$request")
read -r number max attempt <<<"$iteration"
log=$(field log)
[[ -n $log ]] && printf '%s\n' "$request" >>"$log"
complete_at=$(field complete_at)
mode=$(field mode)
fail_at=$(field fail_at)
gate=$(field gate)
gate_at=$(field gate_at)
echo "looper: iteration $number of $max, run $attempt" >&2

if [[ -n $gate && $number == "$gate_at" && $attempt == 1 ]]; then
  while [[ ! -e $gate.$number ]]; do sleep 0.02; done
fi
if [[ $number == "$fail_at" ]] && [[ $mode == fail || ($mode == fail_once && $attempt == 1) ]]; then
  printf '{"status":"error","error":"iteration %s broke"}\n' "$number"
  exit 0
fi
if [[ $mode == quote ]]; then
  printf '{"status":"ok","result":"I will print DONE when it is finished (iteration %s)"}\n' "$number"
elif [[ $number == "${complete_at:-3}" ]]; then
  printf '{"status":"ok","result":"all tests pass\\nDONE"}\n'
else
  printf '{"status":"ok","result":"working on it (iteration %s)"}\n' "$number"
fi
