#!/usr/bin/env bash
# A UCX peer killed in the middle of an exchange must end the job with a non-zero exit within a
# bound (no hang) and, when --expect is given, with that text in the output.
# Usage: ucx_peer_killed.sh <bound_seconds> [--expect <text>] <mpirun and its arguments...>
# The command runs with SY_TEST_UCX_KILL_PEER=1: the test binary's
# UcxFailure.PeerKilledEndsTheJob then SIGKILLs rank 1 between layout and dispatch.
set -u
bound=$1
shift
expect=""
if [ "${1:-}" = "--expect" ]; then
  expect=$2
  shift 2
fi
log=$(mktemp)
start=$(date +%s)
SY_TEST_UCX_KILL_PEER=1 timeout --signal=KILL "$((bound + 30))" "$@" >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
grep -v '^\s*$' "$log" | tail -n 12
echo "exit code $rc after ${elapsed}s (bound ${bound}s)"
status=0
if [ "$rc" -eq 0 ]; then
  echo "FAIL: the job exited 0 although a peer was killed" >&2
  status=1
fi
if [ "$elapsed" -gt "$bound" ]; then
  echo "FAIL: the job took ${elapsed}s to end (bound ${bound}s): it hung on the dead peer" >&2
  status=1
fi
if [ -n "$expect" ] && ! grep -qF -- "$expect" "$log"; then
  echo "FAIL: the output does not say '$expect'" >&2
  status=1
fi
rm -f "$log"
[ "$status" -eq 0 ] && echo "OK: the job ended non-zero within the bound"
exit "$status"
