#!/bin/sh
# Answers and exits at once, leaving a background child (same process group) that
# keeps stdout open for 30 s. Writes its pid to ./grandchild.pid.
sleep 30 &
echo $! > grandchild.pid
echo '{"status":"ok","result":"answered"}'
