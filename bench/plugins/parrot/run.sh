#!/usr/bin/env bash
# Waits; each input comes back as an output line, followed by a wait; the complete
# is answered with the count of messages.
IFS= read -r request
printf '{"type":"waiting"}\n'
n=0
while IFS= read -r line; do
  case $line in
    *'"type":"complete"'*) break ;;
    *'"type":"input"'*)
      n=$((n + 1))
      id=${line##*\"message_id\":\"}
      id=${id%%\"*}
      printf '{"type":"output","text":"%s"}\n{"type":"waiting"}\n' "$id" ;;
  esac
done
printf '{"type":"response","status":"ok","result":{"messages":%d}}\n' "$n"
