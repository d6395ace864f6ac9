#!/usr/bin/env bash
# The benchmark suite in one command, from a fresh clone, as root on Debian:
#
#   bash bench/run.sh [python3 -m bench options]    e.g. --daemon-s 600
#
# Installs what is missing (dockerd and gcc from Debian, rulectl and psutil
# from PyPI; the kernel-module VM's packages are installed by
# tests/vm/build_vm.sh when that row runs), then runs `python3 -m bench`,
# which prints the table and writes bench/results.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() {
	echo "bench/run.sh: $*" >&2
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || { say "missing ${missing[*]}; run as root"; exit 2; }
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! python3 -c "import rulectl.engine, rulectl.store, rulectl.workload" 2>/dev/null; then
	say "installing rulectl (pip install -e .)"
	python3 -m pip install --quiet --disable-pip-version-check -e .
fi
if ! python3 -c "import psutil" 2>/dev/null; then
	say "installing bench/requirements.txt"
	python3 -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
fi
exec python3 -m bench "$@"
