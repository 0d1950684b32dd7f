#!/bin/sh
# Echo plugin (Ductile protocol v2). POSIX sh with no external tools besides sleep, so
# it runs anywhere and costs one fork. The request is compact JSON produced by the
# daemon, which is what makes the pattern matching below reliable.
request=$(cat)

# Top-level fields come first in the request, before any user data, so the first
# occurrence of a key is the real one: strip the shortest prefix up to it.
field() {
    case $request in
        *"\"$1\":\""*)
            rest=${request#*\"$1\":\"}
            printf '%s' "${rest%%\"*}"
            ;;
    esac
}

command=$(field command)
job_id=$(field job_id)

# config.message, if it is a plain string (anything needing escapes falls back to
# "echo" rather than risk emitting broken JSON).
message=echo
config=${request#*\"config\":}
config=${config%%,\"state\":*}
case $config in
    *'"message":"'*)
        rest=${config#*\"message\":\"}
        candidate=${rest%%\"*}
        case $candidate in
            *\\*) ;;
            *) message=$candidate ;;
        esac
        ;;
esac

case $request in
    *'"mode":"error"'*)
        printf '%s\n' '{"status":"error","error":"echo: asked to fail","retry":true}'
        exit 0
        ;;
    *'"mode":"fatal"'*)
        printf '%s\n' '{"status":"error","error":"echo: asked to fail for good","retry":false}'
        exit 0
        ;;
    *'"mode":"hang"'*)
        # exec so the signals the daemon sends land on the sleeping process itself.
        exec sleep 3600
        ;;
    *'"mode":"protocol_error"'*)
        printf '%s\n' 'echo: this is not JSON'
        exit 1
        ;;
    *'"mode":"slow"'*)
        seconds=2
        case $request in
            *'"seconds":'[0-9]*)
                rest=${request#*\"seconds\":}
                seconds=${rest%%[!0-9.]*}
                ;;
        esac
        sleep "$seconds"
        ;;
    *'"mode":"stderr"'*)
        printf '%s\n' "echo: first line on stderr" "echo: second line on stderr" \
            "echo: third line on stderr" >&2
        ;;
esac

printf '{"status":"ok","result":{"message":"%s","request":%s},"events":[{"type":"echo.%s","payload":{"message":"%s","job_id":"%s"}}],"state_updates":{"last_command":"%s","last_job_id":"%s"},"logs":[{"level":"info","message":"echo: %s done"}]}\n' \
    "$message" "$request" "$command" "$message" "$job_id" "$command" "$job_id" "$command"
