#!/usr/bin/env bash
# Run rulectl's test suite on this host: prepare it with setup-host.sh, run
# pytest from the repository root (arguments are passed on), then stop the
# dockerd that setup-host.sh started for this run, if it started one.
# Exits with pytest's status; "no tests collected" (5) is a failure too.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

RULECTL_DOCKERD_PIDFILE="$(mktemp -t rulectl-dockerd.XXXXXX)"
export RULECTL_DOCKERD_PIDFILE

# shellcheck disable=SC2317  # only called through the EXIT trap
stop_our_dockerd() {
	local pid
	pid="$(cat "$RULECTL_DOCKERD_PIDFILE" 2>/dev/null || true)"
	rm -f "$RULECTL_DOCKERD_PIDFILE"
	[[ -n "$pid" ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0

	echo "test.sh: stopping the dockerd started for this run (pid $pid)" >&2
	kill -TERM "$pid"
	# dockerd stops its containers first, each with its own grace period.
	local waited_s=0
	while kill -0 "$pid" 2>/dev/null && ((waited_s < 60)); do
		sleep 1
		waited_s=$((waited_s + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "test.sh: dockerd (pid $pid) still running after ${waited_s}s" >&2
	fi
}
trap stop_our_dockerd EXIT

bash scripts/setup-host.sh

status=0
python3 -m pytest "$@" || status=$?
if ((status == 5)); then
	echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$status"
