#!/usr/bin/env bash
# jobs/local.sh's own arguments and environment, with a stand-in switchyard (SY_BIN) that records
# how the script started it (`switchyard guard -- mpirun ...`) and where, and exits $FAKE_RC: no
# mpirun, no build. Checks:
#   - -h/--help (also after train arguments) prints the script's usage, exit 0, nothing started;
#   - -n / SY_NP must be a positive whole number: 0, abc, 2x, -1 and a missing count are one
#     line "local.sh: -n needs a positive whole number of ranks, got '...'", exit 2, nothing
#     started; -n 3 starts 3 ranks; -n after train arguments is refused naming where it goes;
#   - SY_BIN relative to the directory the script is started from (not the repository root),
#     a command name on PATH taken, a missing one named by the path checked (exit 2);
#   - started through a symlink, it runs from the real repository root;
#   - the start line is shell-quoted (it can be pasted back into a shell);
#   - after exit 75 with a --resume FILE of the user's, the hint says to use --resume auto (the
#     same command again would start from FILE again).
#
#   bash tests/jobs/local_test.sh <source dir>
# shellcheck disable=SC2015  # `check && check || fail`: fail is meant to run when either does not hold
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-local-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/caller" "$tmp/pathbin" "$tmp/link"
cat >"$tmp/caller/sy2" <<'EOF'
#!/usr/bin/env bash
echo "CWD $(pwd)" >>"$FAKE_LOG"
echo "RUN $*" >>"$FAKE_LOG"
exit "${FAKE_RC:-0}"
EOF
chmod +x "$tmp/caller/sy2"
cp "$tmp/caller/sy2" "$tmp/pathbin/sy-on-path"
ln -s "$src/jobs/local.sh" "$tmp/link/local.sh"

# fails, fail, has
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
# run <name> <env assignments...> -- <local.sh arguments...>: from $tmp/caller (or $script, when
# set); sets out, log, rc.
run() {
  local name=$1
  shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  : >"$tmp/$name.log"
  (cd "$tmp/caller" && env -i PATH="$tmp/pathbin:/usr/bin:/bin" HOME="$tmp" FAKE_LOG="$tmp/$name.log" \
    SY_BIN="$tmp/caller/sy2" "${envs[@]}" timeout 20 bash "${script:-$src/jobs/local.sh}" "$@") >"$tmp/$name.out" 2>&1
  rc=$?
  out=$(cat "$tmp/$name.out")
  log=$(cat "$tmp/$name.log")
}

# --help: the usage, nothing started (it started mpirun, train's help printed once per rank).
for h in -h --help; do
  run "help$h" -- "$h"
  ((rc == 0)) || fail "$h: exit $rc: $out"
  has "$out" "jobs/local.sh [-n RANKS]" || fail "$h: no usage: $out"
  [ -z "$log" ] || fail "$h: started the run: $log"
done
run help_late -- -n 2 --config configs/tiny.yaml --help
((rc == 0)) && has "$out" "jobs/local.sh [-n RANKS]" && [ -z "$log" ] ||
  fail "--help after train arguments: exit $rc: $out; $log"

# The rank count.
for n in 0 abc 2x -1; do
  run "np$n" -- -n "$n" --config configs/tiny.yaml
  ((rc == 2)) || fail "-n $n: exit $rc, expected 2: $out"
  has "$out" "local.sh: -n needs a positive whole number of ranks, got '$n'" || fail "-n $n: message: $out"
  [ -z "$log" ] || fail "-n $n: started: $log"
done
run np_missing -- -n
((rc == 2)) || fail "-n without a count: exit $rc: $out"
has "$out" "local.sh: -n needs a positive whole number of ranks, got ''" || fail "-n without a count: message: $out"
run sy_np SY_NP=abc -- --config configs/tiny.yaml
((rc == 2)) && has "$out" "local.sh: SY_NP needs a positive whole number of ranks, got 'abc'" ||
  fail "SY_NP=abc: exit $rc: $out"
for flag in -n --np --np=2 -n=2 -n3; do  # after the train arguments: said before anything starts
  run "late$flag" -- --config configs/tiny.yaml "$flag" 2 --set train.steps=5
  ((rc == 2)) || fail "late $flag: exit $rc, expected 2: $out"
  has "$out" "local.sh: $flag: the rank count comes first and once" || fail "late $flag: message: $out"
  [ -z "$log" ] || fail "late $flag: started: $log"
done
for first in --np=3 -n=3 -n3; do  # the one-word forms first are the count
  run "first$first" -- "$first" --config configs/tiny.yaml
  ((rc == 0)) && has "$log" "mpirun -np 3 " || fail "$first first: exit $rc, not 3 ranks: $out $log"
done
run twice -- -n 2 --config configs/tiny.yaml -n 3
((rc == 2)) && has "$out" "local.sh: -n: the rank count comes first and once" || fail "-n twice: exit $rc: $out"
run resume_n -- --config configs/tiny.yaml --resume -n  # a value, for train to judge
has "$out" "comes first" && fail "--resume -n: taken for a late -n: $out"
run np3 -- -n 3 --config configs/tiny.yaml
((rc == 0)) || fail "-n 3: exit $rc: $out"
has "$log" "mpirun -np 3 " || fail "-n 3: not 3 ranks: $log"

# SY_BIN: the caller's relative path, a command on PATH, a missing one named as checked; the run
# itself from the repository root.
run rel SY_BIN=./sy2 -- --config configs/tiny.yaml
((rc == 0)) || fail "SY_BIN=./sy2 from another directory: exit $rc: $out"
has "$log" "RUN guard -- mpirun" || fail "SY_BIN=./sy2: not started: $log"
has "$log" "CWD $src" || fail "SY_BIN=./sy2: not run from the repository root: $log"
run on_path SY_BIN=sy-on-path -- --config configs/tiny.yaml
((rc == 0)) && has "$log" "$tmp/pathbin/sy-on-path train" || fail "SY_BIN=sy-on-path (on PATH): exit $rc: $out"
run missing SY_BIN=./nope -- --config configs/tiny.yaml
((rc == 2)) && has "$out" "local.sh: $tmp/caller/nope not found" || fail "SY_BIN=./nope: exit $rc: $out"
run missing_on_path SY_BIN=nope -- --config configs/tiny.yaml
((rc == 2)) && has "$out" "local.sh: nope not found on PATH" || fail "SY_BIN=nope: exit $rc: $out"

# Through a symlink: the real repository root (it ran in the symlink's parent folder).
script=$tmp/link/local.sh run symlink -- --config configs/tiny.yaml
((rc == 0)) && has "$log" "CWD $src" || fail "through a symlink: exit $rc, $log: $out"

# The start line, shell-quoted.
run quoted -- --config configs/tiny.yaml --set "run.name=a b"
has "$out" "train --config configs/tiny.yaml --set run.name=a\\ b --resume auto" ||
  fail "the start line is not shell-quoted: $out"

# Exit 75 with a --resume of the user's: resume from the new checkpoint, not the file again.
run resume_file FAKE_RC=75 -- --config configs/tiny.yaml --resume ckpt/step_10.h5
((rc == 75)) || fail "resume_file: exit $rc"
has "$log" "--resume ckpt/step_10.h5" && ! has "$log" "--resume auto" || fail "resume_file: $log"
has "$out" "with --resume auto in place of --resume ckpt/step_10.h5" || fail "resume_file: hint: $out"
run resume_auto FAKE_RC=75 -- --config configs/tiny.yaml
has "$out" "run the same command again to resume" || fail "resume_auto: hint: $out"

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: local.sh's --help, -n/SY_NP checks, SY_BIN lookup, symlink start, quoted start line and resume hint"
