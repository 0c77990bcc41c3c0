# shellcheck shell=bash
# A one-node SLURM cluster for tests, in a temp dir (sourced by run_test.sh). Recipe:
# ../../../shared/MACHINE-NOTES.md "SLURM 22.05 on one machine", with its own munged socket and
# free ports so it is independent of any system munge/slurm. Needs root (slurmd launches jobs).
#
#   cluster_start <dir>    starts munged, slurmctld, slurmd; exports SLURM_CONF; waits for idle
#   cluster_stop           stops what cluster_start started (by pid), safe to call twice
#   cluster_log_tail       the daemons' last log lines (for failure messages)

_cluster_dir=""

_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_stop_pidfile() {  # $1: pid file; SIGTERM, wait up to 10 s, then SIGKILL
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# The slurmstepd processes of this cluster (they detach from slurmd; they inherit its SLURM_CONF).
_our_stepds() {
  local p
  for p in $(pgrep -x slurmstepd 2>/dev/null); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$_cluster_dir/slurm.conf" &&
      echo "$p"
  done
}

cluster_stop() {
  [ -n "$_cluster_dir" ] || return 0
  _stop_pidfile "$_cluster_dir/slurmd.pid"
  local p
  for p in $(_our_stepds); do kill -9 "$p" 2>/dev/null; done
  _stop_pidfile "$_cluster_dir/slurmctld.pid"
  _stop_pidfile "$_cluster_dir/munge/munged.pid"
  _cluster_dir=""
}

# shellcheck disable=SC2120  # run_test.sh passes the directory after cluster_stop
cluster_log_tail() {
  local d=${1:-$_cluster_dir}
  for f in "$d/slurmctld.log" "$d/slurmd.log" "$d/munge/munged.log"; do
    [ -f "$f" ] && { echo "--- $f"; tail -n 15 "$f"; }
  done
}

cluster_start() {
  local dir=$1 here host
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  host=$(hostname -s)
  _cluster_dir=$dir
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
  chmod 755 "$dir" "$dir/munge"

  mungekey -c -k "$dir/munge/munge.key" >/dev/null
  # --force: munged refuses to run as root otherwise; its files are all ours, in $dir.
  munged --force -S "$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed" || { echo "munged failed to start"; return 1; }

  sed -e "s|@HOST@|$host|g" -e "s|@DIR@|$dir|g" -e "s|@CTLD_PORT@|$(_free_port)|g" \
    -e "s|@SLURMD_PORT@|$(_free_port)|g" "$here/slurm.conf.in" >"$dir/slurm.conf"
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -f "$SLURM_CONF" || { echo "slurmctld failed"; cluster_log_tail; return 1; }
  /usr/sbin/slurmd -f "$SLURM_CONF" || { echo "slurmd failed"; cluster_log_tail; return 1; }

  local state=""
  for _ in $(seq 300); do
    state=$(sinfo -h -o %t 2>/dev/null | head -n 1)
    [ "$state" = "idle" ] && return 0
    sleep 0.1
  done
  echo "the node did not become idle within 30 s (state '$state')"
  cluster_log_tail
  return 1
}
