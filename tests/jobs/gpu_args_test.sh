#!/usr/bin/env bash
# The arguments of the GPU machine's scripts (issue 14), checked before they do anything: no
# bundle is built, nothing is run on a GPU. Checks:
#   - an option without its value (gpu_check.sh --archive/--bundle/--stages/--out,
#     gpu_bundle.sh --out/--build-dir/--max-mib, gpu_rehearse.sh --out/--archive) is one line
#     naming it, exit 2 (they ended in "$2: unbound variable", or went on with an empty path);
#   - gpu_check.sh --stages with letters that are no stage (xyz, uppercase) is refused naming
#     them, exit 2 (it ran nothing and passed, leaving a file named *.log.tmp), as is a budget
#     that is not whole seconds (SY_BUDGET_a=abc ended it with "unbound variable");
#   - gpu_rehearse.sh --out DIR never deletes a file it did not write: a folder of someone's
#     files is refused (exit 2, the files kept); as root with unshare, a folder of an earlier
#     rehearsal loses only the rehearsal's own files;
#   - started through a symlink, gpu_check.sh and gpu_rehearse.sh look for the bundle in their
#     real checkout, not beside the symlink;
#   - gpu_bundle.sh's packing step (its "3. pack" section, run alone on a small staged folder: the
#     build and staging before it need CUDA) leaves no archive over --max-mib at --out.
#
#   bash tests/jobs/gpu_args_test.sh <source dir>
# shellcheck disable=SC2015  # `check && check || fail`: fail is meant to run when either does not hold
set -uo pipefail
src=$(cd "${1:?source dir}" && pwd)
tmp=$(mktemp -d /tmp/switchyard-gpu-args-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A stand-in bundle with nothing in it but what gpu_check.sh reads before its stages.
B=$tmp/bundle
mkdir -p "$B"
printf 'stand-in bundle\ncommit: test\n' >"$B/MANIFEST.txt"
cat >"$B/env.sh" <<'EOF'
SY_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SY_BUNDLE
EOF

# fails, fail, has
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fails=0  # the failed checks, counted by fail (lib.sh)
# run <name> <script path> <arguments...>: sets out, rc (env: the caller's, TMPDIR private).
run() {
  local name=$1 script=$2
  shift 2
  TMPDIR=$tmp timeout 60 bash "$script" "$@" >"$tmp/$name.out" 2>&1
  rc=$?
  out=$(cat "$tmp/$name.out")
}

# ---- an option without its value ----------------------------------------------------------------
for opt in --archive --bundle --stages --out; do
  run "check$opt" "$src/jobs/gpu_check.sh" --bundle "$B" --out "$tmp/co" "$opt"
  ((rc == 2)) && has "$out" "gpu_check.sh: $opt needs a value" || fail "gpu_check.sh $opt without a value: exit $rc: $out"
done
for opt in --out --build-dir; do
  run "bundle$opt" "$src/jobs/gpu_bundle.sh" "$opt"
  ((rc == 2)) && has "$out" "gpu_bundle.sh: $opt needs a value" || fail "gpu_bundle.sh $opt without a value: exit $rc: $out"
done
# (an unknown argument after it, so that a script that takes "abc" goes no further)
run bundle_max "$src/jobs/gpu_bundle.sh" --max-mib abc --bogus-stop-here
((rc == 2)) && has "$out" "gpu_bundle.sh: --max-mib abc: expected a number" || fail "gpu_bundle.sh --max-mib abc: exit $rc: $out"
# (a bundle that is not there first: a script that goes on stops at it)
run rehearse_out "$src/jobs/gpu_rehearse.sh" --archive "$tmp/none.tar.xz" --out
((rc == 2)) && has "$out" "gpu_rehearse.sh: --out needs a value" || fail "gpu_rehearse.sh --out without a value: exit $rc: $out"
run rehearse_archive "$src/jobs/gpu_rehearse.sh" --out "$tmp/rehearse-new" --archive
((rc == 2)) && has "$out" "gpu_rehearse.sh: --archive needs a value" ||
  fail "gpu_rehearse.sh --archive without a value: exit $rc: $out"
# The next option is no value: --out --archive X made a folder named --archive (review).
run rehearse_out_option "$src/jobs/gpu_rehearse.sh" --out --archive "$tmp/none.tar.xz"
((rc == 2)) && has "$out" "gpu_rehearse.sh: --out needs a value" ||
  fail "gpu_rehearse.sh --out --archive: exit $rc: $out"

# ---- gpu_check.sh --stages and the budgets --------------------------------------------------------
for st in xyz aB; do
  mkdir -p "$tmp/co-$st"
  run "stages-$st" "$src/jobs/gpu_check.sh" --bundle "$B" --out "$tmp/co-$st" --stages "$st"
  bad=${st//[abcdef]/}
  ((rc == 2)) && has "$out" "'$bad' is no stage" || fail "--stages $st: exit $rc: $out"
  has "$out" "no stage failed" && fail "--stages $st: passed: $out"
  [ -e "$tmp/co-$st/*.log.tmp" ] && fail "--stages $st: left a file named *.log.tmp"
done
for v in abc 1.5 08; do
  SY_BUDGET_a=$v run "budget-$v" "$src/jobs/gpu_check.sh" --bundle "$B" --out "$tmp/co-b" --stages a
  ((rc == 2)) && has "$out" "gpu_check.sh: SY_BUDGET_a='$v': expected whole seconds" ||
    fail "SY_BUDGET_a=$v: exit $rc: $out"
done

# ---- gpu_rehearse.sh --out: never someone's files -------------------------------------------------
mkdir -p "$tmp/user"
echo "mine" >"$tmp/user/notes.txt"
echo "mine too" >"$tmp/user/summary.txt"
: >"$tmp/bogus.tar.xz"  # a bundle that does not unpack: a rehearsal that gets this far stops there
run rehearse_user "$src/jobs/gpu_rehearse.sh" --archive "$tmp/bogus.tar.xz" --out "$tmp/user"
((rc == 2)) && has "$out" "gpu_rehearse.sh: --out $tmp/user has files in it" ||
  fail "gpu_rehearse.sh --out <a folder of someone's files>: exit $rc: $out"
[ -f "$tmp/user/notes.txt" ] && [ -f "$tmp/user/summary.txt" ] ||
  fail "gpu_rehearse.sh --out deleted someone's files: $(ls -A "$tmp/user")"
if [ "$(id -u)" -eq 0 ] && unshare -m true 2>/dev/null; then
  # An earlier rehearsal's folder (its marker): its own files go, someone's stay.
  mkdir -p "$tmp/earlier"
  : >"$tmp/earlier/.gpu_rehearse-out"
  echo old >"$tmp/earlier/summary.txt"
  echo old >"$tmp/earlier/a.log"
  echo "mine" >"$tmp/earlier/notes.txt"
  run rehearse_earlier "$src/jobs/gpu_rehearse.sh" --archive "$tmp/bogus.tar.xz" --out "$tmp/earlier"
  has "$out" "FAIL: cannot unpack" || fail "gpu_rehearse.sh --out <an earlier rehearsal's>: exit $rc: $out"
  [ ! -e "$tmp/earlier/summary.txt" ] && [ ! -e "$tmp/earlier/a.log" ] ||
    fail "gpu_rehearse.sh left an earlier rehearsal's files: $(ls -A "$tmp/earlier")"
  [ -f "$tmp/earlier/notes.txt" ] || fail "gpu_rehearse.sh deleted a file it did not write"
  # A new folder is taken and marked.
  run rehearse_new "$src/jobs/gpu_rehearse.sh" --archive "$tmp/bogus.tar.xz" --out "$tmp/new"
  has "$out" "FAIL: cannot unpack" && [ -e "$tmp/new/.gpu_rehearse-out" ] ||
    fail "gpu_rehearse.sh --out <a new folder>: exit $rc: $out"
else
  echo "note: not root or no unshare: gpu_rehearse.sh's cleaning of an earlier rehearsal's folder not checked"
fi

# ---- through a symlink: the real checkout ---------------------------------------------------------
tree=$tmp/tree
mkdir -p "$tree/jobs" "$tmp/link"
cp "$src/jobs/gpu_check.sh" "$src/jobs/gpu_rehearse.sh" "$tree/jobs/"
ln -s "$tree/jobs/gpu_check.sh" "$tmp/link/gpu_check.sh"
ln -s "$tree/jobs/gpu_rehearse.sh" "$tmp/link/gpu_rehearse.sh"
run link_check "$tmp/link/gpu_check.sh" --out "$tmp/co-link"
has "$out" "no bundle: $tree/jobs/../.device/switchyard-gpu.tar.xz" ||
  fail "gpu_check.sh through a symlink: not its checkout's bundle: $out"
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null; then
  run link_rehearse "$tmp/link/gpu_rehearse.sh" --out "$tmp/ro-link"
  has "$out" "no bundle at $tree/.device/switchyard-gpu.tar.xz" ||
    fail "gpu_rehearse.sh through a symlink: not its checkout's bundle: $out"
fi

# ---- gpu_bundle.sh: an archive over --max-mib is not left at --out ------------------------------
pk=$tmp/pack
mkdir -p "$pk/stage/switchyard-gpu"
head -c 300000 /dev/urandom >"$pk/stage/switchyard-gpu/blob"  # 0.3 MiB that xz cannot shrink
{
  echo 'set -euo pipefail'
  echo 'say() { echo "gpu_bundle: $*"; }; die() { echo "gpu_bundle: error: $*" >&2; exit 1; }'
  echo "stage_root=$pk/stage B=$pk/stage/switchyard-gpu out=$pk/out/sy.tar.xz max_mib=0.1"
  echo 'declare -A carried=(); plugins=()'
  sed -n '/^# ---- 3. pack/,$p' "$src/jobs/gpu_bundle.sh"
} >"$pk/pack.sh"
grep -q 'xz -9' "$pk/pack.sh" || fail "gpu_bundle.sh: no packing section found to run"
run bundle_oversize "$pk/pack.sh"
((rc == 1)) && has "$out" "over --max-mib 0.1" || fail "gpu_bundle.sh pack over --max-mib: exit $rc: $out"
[ -z "$(ls -A "$pk/out" 2>/dev/null)" ] || fail "gpu_bundle.sh left an archive over --max-mib: $(ls -A "$pk/out")"

if ((fails)); then echo "$fails check(s) failed"; exit 1; fi
echo "PASS: gpu_check.sh, gpu_bundle.sh and gpu_rehearse.sh refuse a missing value, unknown stages and bad budgets (exit 2), never delete someone's files, and find their checkout through a symlink"
