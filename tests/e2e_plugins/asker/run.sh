#!/usr/bin/env bash
# An interactive plugin without a JSON library, as a third party might write one.
#
# ask: asks "What is your name?" and "What is your favourite colour?", each followed
# by a wait; then waits for the complete (saying so) and answers with both replies.
# A retried attempt skips the questions its transcript already answers. With
# payload.gate (a path), it takes in each answer only once <gate>.<n> exists, so a
# test can see it busy between an answer and the next question. payload.mode:
#   no_response  exit 0 after the complete without a response line
#   deaf         ignore the complete (the gateway stops it after its kill grace)
#   quiet        say nothing after the first wait (the idle timeout stops it)
# poll: a plain v2 command, answered at once.
set -u

IFS= read -r request
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$2"; }

if [[ $request == *'"command":"poll"'* ]]; then
  printf '{"status":"ok","result":{"polled":true}}\n'
  exit 0
fi

mode=$(field mode "$request")
gate=$(field gate "$request")
answers=()
if [[ $request == *'"transcript":['* ]]; then
  transcript=${request#*\"transcript\":[}
  transcript=${transcript%%]*}
  while IFS= read -r message; do
    answers+=("$message")
  done < <(grep -o '"message":"[^"]*"' <<<"$transcript" | sed 's/^"message":"\(.*\)"$/\1/')
fi
resumed=${#answers[@]}
echo "asker: starting with ${resumed} answers from the transcript" >&2

respond() {
  local list="" a
  for a in "${answers[@]}"; do list+="${list:+,}\"$a\""; done
  printf '{"type":"response","status":"ok","result":{"answers":[%s],"resumed":%d},"session":{"answers":%d}}\n' \
    "$list" "$resumed" "${#answers[@]}"
  exit 0
}

completed() {
  case $mode in
    no_response) exit 0 ;;
    deaf) exec sleep 3600 ;;
  esac
  respond
}

questions=("What is your name?" "What is your favourite colour?")
while ((${#answers[@]} < ${#questions[@]})); do
  printf '{"type":"output","text":"%s"}\n' "${questions[${#answers[@]}]}"
  printf '{"type":"waiting"}\n'
  [[ $mode == quiet ]] && exec sleep 3600
  got=""
  while IFS= read -r line; do
    case $line in
      *'"type":"input"'*) got=$(field message "$line"); break ;;
      *'"type":"complete"'*) completed ;;
    esac
  done
  [[ -z $got ]] && respond  # stdin closed: answer with what we have
  answers+=("$got")
  if [[ -n $gate ]]; then
    while [[ ! -e $gate.${#answers[@]} ]]; do sleep 0.02; done
  fi
  echo "noted: $got"  # not JSON: a stdout message all the same
done
printf '{"type":"output","text":"Thank you. Complete the session when you are done."}\n'
printf '{"type":"waiting"}\n'
while IFS= read -r line; do
  case $line in
    *'"type":"complete"'*) completed ;;
    *'"type":"input"'*)
      printf '{"type":"output","text":"I have all I need."}\n{"type":"waiting"}\n' ;;
  esac
done
respond
