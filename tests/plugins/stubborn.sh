#!/bin/sh
# Ignores SIGTERM, and its child catches SIGTERM and carries on: only SIGKILL to the
# whole process group stops them. The child writes its pid to ./child.pid.
#
# The child starts before the parent ignores TERM: a shell cannot trap a signal that
# was already ignored when it started.
sh -c 'trap "echo child: ignoring TERM >&2" TERM; echo $$ > child.pid; while :; do sleep 1; done' &
trap '' TERM
while [ ! -s child.pid ]; do sleep 0.01; done
echo started >&2
wait
