#!/bin/sh
# Ignores SIGTERM, and its child catches SIGTERM and carries on: only SIGKILL to the
# whole process group stops them. Writes the child's pid to ./child.pid.
trap '' TERM
sh -c 'trap "echo child: ignoring TERM >&2" TERM; while :; do sleep 1; done' &
echo $! > child.pid
echo started >&2
wait
