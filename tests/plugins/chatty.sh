#!/bin/sh
# Writes to stderr, then waits for ./go to exist before answering, so a test can see
# stderr lines arrive while the plugin is still running.
echo "waiting for go" >&2
while [ ! -e go ]; do sleep 0.01; done
echo "got go" >&2
echo '{"status":"ok","result":"went"}'
