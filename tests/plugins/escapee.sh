#!/bin/sh
# Like grandchild.sh, but the background child leaves the process group (setsid), so
# the group kill cannot reach it: only the linger bound ends the run. Writes its pid
# to ./escapee.pid.
setsid sleep 30 &
echo $! > escapee.pid
echo '{"status":"ok","result":"answered"}'
