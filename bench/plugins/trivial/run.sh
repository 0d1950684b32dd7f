#!/bin/sh
# Trivial plugin (protocol v2): the request is one line (the daemon ends it with a
# newline), so one `read` takes all of it; the answer ignores it. Both are shell
# builtins: the job costs the shell's start and nothing else.
read -r _ || true
printf '%s\n' '{"status":"ok","result":{}}'
