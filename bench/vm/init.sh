#!/bin/sh
# /init of the benchmark VM (busybox sh, pid 1): loads rulectl's modules,
# starts N sleeping processes in a Docker-style cgroup, then times one
# snapshot from the modules' files and one from /proc (all three files, then
# stat only), alternately, ROUNDS times each (benchprobe), printing
# "BENCH ..." lines on the console.
# N and ROUNDS come from the kernel command line (bench.procs=, bench.rounds=).

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup

procs=1000
rounds=5
for word in $(cat /proc/cmdline); do
	case $word in
	bench.procs=*) procs=${word#*=} ;;
	bench.rounds=*) rounds=${word#*=} ;;
	esac
done

insmod /lib/rulectl/rulectl_procs.ko || echo "BENCH error insmod rulectl_procs"
insmod /lib/rulectl/rulectl_containers.ko ||
	echo "BENCH error insmod rulectl_containers"

id=$(echo bench-swarm | sha256sum | cut -c1-64)
dir=/sys/fs/cgroup/system.slice/docker-$id.scope
mkdir -p "$dir"
sh -c 'echo $$ >"$0/cgroup.procs" && exec swarm "$1" /tmp/ready' \
	"$dir" "$procs" &
tries=0
while [ ! -s /tmp/ready ] && [ $tries -lt 1200 ]; do
	tries=$((tries + 1))
	usleep 100000
done
echo "BENCH started $(cat /tmp/ready 2>/dev/null)"
echo "BENCH processes $(ls -d /proc/[0-9]* | wc -l)"

benchprobe kernel 1 >/dev/null
benchprobe proc 1 >/dev/null
i=0
while [ $i -lt "$rounds" ]; do
	benchprobe kernel 1
	benchprobe proc 1
	benchprobe stat 1
	i=$((i + 1))
done
echo "BENCH done"
poweroff -f
