#!/usr/bin/env bash
# jobs/deps.sh, jobs/quickstart.sh, jobs/test.sh and jobs/check_format.sh, each copied into a
# stand-in checkout under a temporary folder, with stand-in cmake, ctest, dpkg-query, apt-get and
# a stand-in switchyard that record how they were called: nothing is installed or built. Checks:
#   - -h/--help prints each script's usage and exits 0 before anything runs (quickstart.sh
#     installed packages and built first, deps.sh and test.sh ignored it);
#   - deps.sh and test.sh refuse an argument that is not theirs (--tests), exit 2;
#   - quickstart.sh passes a --config of the user's instead of configs/small.yaml (not both);
#   - test.sh's totals with a skipped and a disabled test (ctest's "out of N" leaves disabled
#     tests out: they were subtracted twice);
#   - check_format.sh without clang-format on PATH says so, exit 2 (every file was listed as
#     misformatted), and a .clang-format it cannot parse is an error, exit 2, not a file to
#     reformat; a misformatted file is still listed, exit 1.
#
#   bash tests/jobs/tools_test.sh <source dir>
# shellcheck disable=SC2015  # `check && check || fail`: fail is meant to run when either does not hold
# shellcheck disable=SC2016  # the stand-ins' $* and $FAKE_LOG are theirs, expanded when they run
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-tools-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
# Stand-ins: each records "<name> <arguments>" in $FAKE_LOG.
for t in cmake apt-get sudo; do
  printf '#!/usr/bin/env bash\necho "%s $*" >>"$FAKE_LOG"\n' "$t" >"$tmp/bin/$t"
done
cat >"$tmp/bin/dpkg-query" <<'EOF'
#!/usr/bin/env bash
echo "dpkg-query $*" >>"$FAKE_LOG"
echo "install ok installed"
EOF
# ctest as it reports one passed, one skipped, one disabled and one failed test (ctest 3.25).
cat >"$tmp/bin/ctest" <<'EOF'
#!/usr/bin/env bash
echo "ctest $*" >>"$FAKE_LOG"
cat <<'LOG'
Test project /tmp/ct/b
    Start 1: ok
1/4 Test #1: ok ...............................   Passed    0.00 sec
    Start 2: skip
2/4 Test #2: skip .............................***Skipped   0.00 sec
    Start 3: dis
3/4 Test #3: dis ..............................***Not Run (Disabled)   0.00 sec
    Start 4: bad
4/4 Test #4: bad ..............................***Failed    0.00 sec

67% tests passed, 1 tests failed out of 3

Total Test time (real) =   0.01 sec

The following tests did not run:
	  2 - skip (Skipped)
	  3 - dis (Disabled)

The following tests FAILED:
	  4 - bad (Failed)
Errors while running CTest
LOG
exit 8
EOF
chmod +x "$tmp/bin"/*

# A stand-in checkout: the scripts, a switchyard that records its arguments, the token file.
repo=$tmp/repo
mkdir -p "$repo/jobs" "$repo/build" "$repo/build-test" "$repo/data"
cp "$src/jobs/deps.sh" "$src/jobs/quickstart.sh" "$src/jobs/test.sh" "$repo/jobs/"
printf '#!/usr/bin/env bash\necho "switchyard $*" >>"$FAKE_LOG"\n' >"$repo/build/switchyard"
chmod +x "$repo/build/switchyard"
: >"$repo/data/licenses.h5"
printf '#!/usr/bin/env bash\necho "check_format $*" >>"$FAKE_LOG"\n' >"$repo/jobs/check_format.sh"

# fails, fail, has
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
# run <name> <script> <arguments...>: the stand-in checkout's script; sets out, log, rc.
run() {
  local name=$1 script=$2
  shift 2
  : >"$tmp/$name.log"
  env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp" FAKE_LOG="$tmp/$name.log" \
    timeout 30 bash "$repo/jobs/$script" "$@" >"$tmp/$name.out" 2>&1
  rc=$?
  out=$(cat "$tmp/$name.out")
  log=$(cat "$tmp/$name.log")
}

# --help: the usage, nothing run.
for s in deps.sh quickstart.sh test.sh; do
  for h in -h --help; do
    run "help-$s$h" "$s" "$h"
    ((rc == 0)) || fail "$s $h: exit $rc: $out"
    has "$out" "bash jobs/$s" || fail "$s $h: no usage: $out"
    [ -z "$log" ] || fail "$s $h: ran something: $log"
  done
done
run help_late quickstart.sh --set train.steps=5 --help
((rc == 0)) && [ -z "$log" ] || fail "quickstart.sh --help after train arguments: exit $rc: $out; $log"

# Arguments that are not theirs.
run deps_typo deps.sh --tests
((rc == 2)) && has "$out" "deps.sh: unknown argument '--tests'" || fail "deps.sh --tests: exit $rc: $out"
has "$log" "dpkg-query" && fail "deps.sh --tests: went on: $log"
run deps_test deps.sh --test
((rc == 0)) && has "$log" "dpkg-query -W -f=\${Status} slurm-wlm" || fail "deps.sh --test: exit $rc: $out; $log"
run test_typo test.sh --bogus
((rc == 2)) && has "$out" "test.sh: unknown argument '--bogus'" || fail "test.sh --bogus: exit $rc: $out"
[ -z "$log" ] || fail "test.sh --bogus: went on: $log"

# quickstart.sh: the user's --config alone.
run qs_config quickstart.sh --config configs/tiny.yaml --set train.steps=5
((rc == 0)) || fail "quickstart.sh --config: exit $rc: $out"
has "$log" "switchyard train --resume auto --config configs/tiny.yaml --set train.steps=5" ||
  fail "quickstart.sh --config: switchyard got: $log"
run qs_default quickstart.sh --set train.steps=5
has "$log" "switchyard train --config configs/small.yaml --resume auto --set train.steps=5" ||
  fail "quickstart.sh: switchyard got: $log"
# Through a symlink: the real checkout's build (it looked beside the symlink's folder).
mkdir -p "$tmp/link"
ln -s "$repo/jobs/quickstart.sh" "$tmp/link/quickstart.sh"
: >"$tmp/qs_link.log"
env -i PATH="$tmp/bin:/usr/bin:/bin" HOME="$tmp" FAKE_LOG="$tmp/qs_link.log" \
  timeout 30 bash "$tmp/link/quickstart.sh" >"$tmp/qs_link.out" 2>&1
rc=$?
((rc == 0)) && grep -q "switchyard train --config configs/small.yaml" "$tmp/qs_link.log" ||
  fail "quickstart.sh through a symlink: exit $rc: $(cat "$tmp/qs_link.out")"

# test.sh's totals: 1 passed, 1 failed, the skipped and the disabled one skipped.
run totals test.sh
((rc == 8)) || fail "test.sh: exit $rc, expected ctest's 8: $out"
has "$out" "switchyard: 1 passed, 1 failed, 2 skipped" || fail "test.sh totals: $(tail -n 1 <<<"$out")"

# check_format.sh in a git work tree of its own.
fmt=$tmp/fmt
mkdir -p "$fmt/jobs" "$fmt/src" "$tmp/nocf"
cp "$src/jobs/check_format.sh" "$fmt/jobs/"
printf 'BasedOnStyle: Google\n' >"$fmt/.clang-format"
printf 'int x;\n' >"$fmt/src/a.cpp"
git -C "$fmt" init -q
# A PATH with everything the script needs but clang-format.
for t in bash git dirname realpath grep head sed cat env; do ln -s "$(command -v "$t")" "$tmp/nocf/$t"; done
fmt_run() {  # <name> <PATH>
  timeout 30 env -i PATH="$2" HOME="$tmp" bash "$fmt/jobs/check_format.sh" >"$tmp/$1.out" 2>&1
  rc=$?
  out=$(cat "$tmp/$1.out")
}
if command -v clang-format >/dev/null; then
  fmt_run fmt_ok "/usr/bin:/bin"
  ((rc == 0)) || fail "check_format.sh on a formatted file: exit $rc: $out"
  printf 'int  x;\n' >"$fmt/src/a.cpp"
  fmt_run fmt_bad "/usr/bin:/bin"
  ((rc == 1)) && has "$out" "src/a.cpp" || fail "check_format.sh on a misformatted file: exit $rc: $out"
  printf 'int x;\n' >"$fmt/src/a.cpp"
  printf 'BasedOnStyle: Google\nFoo: [\n' >"$fmt/.clang-format"
  fmt_run fmt_config "/usr/bin:/bin"
  ((rc == 2)) && has "$out" "check_format.sh: clang-format cannot check src/a.cpp" ||
    fail "check_format.sh with a broken .clang-format: exit $rc: $out"
  has "$out" "not clang-formatted" && fail "check_format.sh: a broken .clang-format made files misformatted: $out"
else
  echo "note: clang-format not installed: its format checks skipped"
fi
fmt_run fmt_missing "$tmp/nocf"
((rc == 2)) && has "$out" "check_format.sh: clang-format not found (bash jobs/deps.sh --test installs it)" ||
  fail "check_format.sh without clang-format: exit $rc: $out"
has "$out" "not clang-formatted" && fail "check_format.sh without clang-format listed files: $out"
env -i PATH=/usr/bin:/bin bash "$fmt/jobs/check_format.sh" --help >"$tmp/fmt_help.out" 2>&1
rc=$?
((rc == 0)) && grep -q "bash jobs/check_format.sh" "$tmp/fmt_help.out" || fail "check_format.sh --help: exit $rc"

# Through a symlink: its own checkout's files (git ran in the symlink's parent folder).
printf 'BasedOnStyle: Google\n' >"$fmt/.clang-format"
ln -s "$fmt/jobs/check_format.sh" "$tmp/link/check_format.sh"
if command -v clang-format >/dev/null; then
  env -i PATH=/usr/bin:/bin bash "$tmp/link/check_format.sh" >"$tmp/fmt_link.out" 2>&1
  rc=$?
  ((rc == 0)) || fail "check_format.sh through a symlink: exit $rc: $(cat "$tmp/fmt_link.out")"
fi

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: deps.sh, quickstart.sh, test.sh and check_format.sh: --help, their own arguments, quickstart's --config, test.sh's totals, check_format's missing clang-format and broken .clang-format"
