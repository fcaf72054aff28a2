# Progress lines for the demo's long-running scripts (sourced, not run): every line names
# its phase and the time since the whole command started, and a long step prints a
# heartbeat, so a quiet minute is never mistaken for a hang.
#
#   PROGRESS_TAG=demo; source tools/progress.sh
#   say "terraform apply"                   -> [demo 0:42] terraform apply
#   run_long "building consul" cmd args...  -> every 30 s: [demo 3:42] still building consul (3m30s)
#
# MICROSWARM_PROGRESS_START (epoch seconds) is the start of the clock; a script that sets
# it hands its clock down to the scripts it runs (make demo -> tools/images/build.sh).
# MICROSWARM_HEARTBEAT sets the heartbeat's period in seconds (default 30).
# shellcheck shell=bash

: "${PROGRESS_TAG:=progress}"
: "${MICROSWARM_PROGRESS_START:=$(date +%s)}"
export MICROSWARM_PROGRESS_START
: "${MICROSWARM_HEARTBEAT:=30}"

# clock prints the time since the start as m:ss.
clock() {
  local s=$(($(date +%s) - MICROSWARM_PROGRESS_START))
  printf '%d:%02d' $((s / 60)) $((s % 60))
}

# dur prints a number of seconds as 45s or 3m30s.
dur() {
  if (($1 < 60)); then printf '%ds' "$1"; else printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); fi
}

# say prints one progress line on stderr.
say() { echo "[$PROGRESS_TAG $(clock)] $*" >&2; }

# run_long [-l LOG] WHAT CMD [ARG...] runs CMD and, while it runs, says "still WHAT
# (elapsed)" every MICROSWARM_HEARTBEAT seconds. CMD's stdout is untouched; its stderr
# goes to LOG (overwritten) if given. It returns CMD's status. CMD should be a program,
# not a shell function: errexit does not apply inside it here.
run_long() {
  local log=""
  if [ "$1" = -l ]; then log=$2; shift 2; fi
  local what=$1
  shift
  local started=$SECONDS beat rc=0
  (
    tick=""
    trap '[ -z "$tick" ] || kill "$tick" 2>/dev/null; exit 0' TERM
    while :; do
      sleep "$MICROSWARM_HEARTBEAT" &
      tick=$!
      wait "$tick"
      say "still $what ($(dur $((SECONDS - started))))"
    done
  ) >/dev/null &
  beat=$!
  if [ -n "$log" ]; then "$@" 2>"$log" || rc=$?; else "$@" || rc=$?; fi
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  return "$rc"
}
