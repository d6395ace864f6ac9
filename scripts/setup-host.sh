#!/usr/bin/env bash
# Prepare a Debian 12 host (as root) for rulectl's tests: packages, the Python
# package, a running Docker engine and a running cron. Safe to run again: each
# step only acts when its result is missing.
#
# If this script starts dockerd itself it writes the daemon's pid to
# $RULECTL_DOCKERD_PIDFILE (when set), so a caller such as scripts/test.sh can
# stop exactly the daemon that was started for it and nothing else.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dockerd_log="${RULECTL_DOCKERD_LOG:-/var/log/rulectl-dockerd.log}"
dockerd_wait_s="${RULECTL_DOCKERD_WAIT_S:-60}"

packages=(
	docker.io cron gcc libc6-dev python3 python3-pip
	# systemd-analyze and the unit directory, for verifying the unit file;
	# a Debian root booted with systemd-nspawn, for running the service
	systemd systemd-container debootstrap
	# used by the kernel-module tests (booted under QEMU)
	qemu-system-x86 busybox-static cpio linux-image-amd64
	linux-headers-amd64
)

log() {
	printf 'setup-host: %s\n' "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

[[ "$(id -u)" -eq 0 ]] || die "must run as root (installs packages, starts dockerd)"

install_packages() {
	local missing=() pkg status
	for pkg in "${packages[@]}"; do
		status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
		[[ "$status" == "install ok installed" ]] || missing+=("$pkg")
	done
	if ((${#missing[@]} == 0)); then
		log "all Debian packages present"
		return
	fi
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${missing[@]}"
}

install_python_package() {
	log "pip install -e '.[test]' in $repo_root"
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
		-e "${repo_root}[test]"
}

start_dockerd() {
	if docker info >/dev/null 2>&1; then
		log "docker engine already answering"
		return
	fi
	command -v dockerd >/dev/null || die "dockerd not found (apt-get install docker.io)"

	log "starting dockerd, log in $dockerd_log"
	mkdir -p "$(dirname "$dockerd_log")"
	# setsid: the daemon must not share the caller's process group, or a
	# Ctrl-C meant for the tests would take the engine down mid-run.
	setsid dockerd >>"$dockerd_log" 2>&1 </dev/null &
	local pid=$!
	if [[ -n "${RULECTL_DOCKERD_PIDFILE:-}" ]]; then
		echo "$pid" >"$RULECTL_DOCKERD_PIDFILE"
	fi

	local waited_s=0
	until docker info >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$dockerd_log" >&2 || true
			die "dockerd (pid $pid) exited during start-up; see $dockerd_log"
		fi
		if ((waited_s >= dockerd_wait_s)); then
			tail -n 20 "$dockerd_log" >&2 || true
			die "dockerd (pid $pid) did not answer within ${dockerd_wait_s}s; see $dockerd_log"
		fi
		sleep 1
		waited_s=$((waited_s + 1))
	done
	log "dockerd (pid $pid) answering after ${waited_s}s"
}

start_cron() {
	# cron writes its pid here; a live pid means it is running.
	local pidfile=/var/run/crond.pid
	if [[ -s "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
		log "cron already running"
		return
	fi
	log "starting cron"
	/usr/sbin/cron
}

cd "$repo_root"
install_packages
install_python_package
start_dockerd
start_cron
