#!/bin/sh
# /init of the rulectl test VM (busybox sh, pid 1).
#
# Loads the two modules, starts processes in cgroups laid out the way Docker,
# containerd, CRI-O and Podman lay them out, captures /proc next to the
# modules' JSON, reads the files hundreds of times while processes fork and
# exit, unloads the modules, and sends everything under /tmp/results to the
# host through the second serial port (ttyS1) as base64 of a tar.gz,
# followed by a line "#end".  The host-side tests decide what passed; this
# script only records.
#
# Results, one file per step: NAME.out (output) and NAME.rc (exit status);
# layout lists "role pid cgroup-directory" for every process started here;
# snapA/ (cgroup v2), snapB/ (v2 plus a v1 cpu,cpuacct hierarchy) and
# snapC/ (1500 more processes) are captures made by "rcprobe snap";
# dmesg.txt and dmesg-raw.txt (with <level> prefixes) are taken at the end.

export PATH=/bin
R=/tmp/results

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p "$R"

say() {
	echo "rulectl-vm: $*"
}

# run NAME CMD...: runs CMD, output in NAME.out, exit status in NAME.rc.
run() {
	name=$1
	shift
	"$@" >"$R/$name.out" 2>&1
	echo $? >"$R/$name.rc"
	say "$name: exit $(cat "$R/$name.rc")"
}

# start ROLE DIR CMD...: starts CMD in the cgroup directory DIR.
start() {
	role=$1
	dir=$2
	shift 2
	mkdir -p "$dir"
	sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$dir" "$@" &
	echo "$role $! $dir" >>"$R/layout"
}

# settle: waits until every process in the layout runs its final program
# (its comm is no longer "sh"), for at most 30 s.
settle() {
	tries=0
	while [ $tries -lt 300 ]; do
		waiting=0
		while read -r role pid dir; do
			[ "$(cat /proc/$pid/comm 2>/dev/null)" = sh ] &&
				waiting=1
		done <"$R/layout"
		[ $waiting = 0 ] && return 0
		tries=$((tries + 1))
		usleep 100000
	done
	say "settle: gave up waiting"
}

# wait_for FILE: waits up to 60 s for FILE to appear.
wait_for() {
	tries=0
	while [ ! -e "$1" ] && [ $tries -lt 600 ]; do
		tries=$((tries + 1))
		usleep 100000
	done
}

# id_of NAME: a container id (64 lowercase hex digits) made from NAME.
id_of() {
	echo "$1" | sha256sum | cut -c1-64
}

say "booted: $(uname -r)"
uname -r >"$R/uname.txt"
cat /proc/cmdline >"$R/kernel-cmdline.txt"
: >"$R/layout"

run insmod_procs insmod /lib/rulectl/rulectl_procs.ko
run insmod_containers insmod /lib/rulectl/rulectl_containers.ko

# ---- A: cgroup v2 only ---------------------------------------------------

V2=/sys/fs/cgroup
mount -t cgroup2 cgroup2 "$V2"

# First, with no other container process around: a reader resumes after
# the process it could not fit in its first read has exited.
resume_a="$V2/resume/docker-$(id_of resume-a).scope"
resume_b="$V2/resume/docker-$(id_of resume-b).scope"
mkdir -p "$resume_a" "$resume_b"
run resume rcprobe resume "$resume_a" "$resume_b" "$R/resume.json"

# Docker with the systemd driver; the container's first process has a child.
start docker-v2 "$V2/system.slice/docker-$(id_of docker-v2).scope" \
	sh -c 'sleep 1001 & exec sleep 1000'
# Kubernetes with containerd and the systemd driver.
kube=$V2/kubepods.slice/kubepods-besteffort.slice
kube=$kube/kubepods-besteffort-pod0f6b2d1e_7c4a_4d0e_9a51_2f3c8e1b6a70.slice
start kubepods-v2 "$kube/cri-containerd-$(id_of kubepods-v2).scope" sleep 1002
# Podman puts the payload one level below its scope.
start libpod-v2 "$V2/machine.slice/libpod-$(id_of libpod-v2).scope/container" \
	sleep 1003
start crio-v2 "$V2/system.slice/crio-$(id_of crio-v2).scope" sleep 1004
# Docker with the cgroupfs driver, running a container inside a container.
start nested-v2 "$V2/docker/$(id_of outer-v2)/sub/$(id_of nested-v2)" \
	sleep 1005
# Not container ids: 63 digits, upper case, a plain service.
short=$(id_of short-v2 | cut -c1-63)
start short-v2 "$V2/system.slice/docker-$short.scope" sleep 1006
upper=$(id_of upper-v2 | tr a-f A-F)
start upper-v2 "$V2/system.slice/docker-$upper.scope" sleep 1007
start service-v2 "$V2/system.slice/cron.service" sleep 1008
start weird "$V2/system.slice/docker-$(id_of weird).scope" rcprobe weird
start title "$V2" rcprobe title
start threads "$V2/system.slice/docker-$(id_of threads).scope" \
	rcprobe threads /tmp/threads-ready
settle
wait_for /tmp/threads-ready

run snapA rcprobe snap "$R/snapA"
cp "$R/layout" "$R/snapA/layout"

# ---- B: a cgroup v1 cpu,cpuacct hierarchy as well ------------------------

V1=/cgroup-v1
mkdir -p "$V1"
run mount_v1 mount -t cgroup -o cpu,cpuacct cgroup "$V1"
start docker-v1 "$V1/docker/$(id_of docker-v1)" \
	sh -c 'sleep 1011 & exec sleep 1010'
kube=$V1/kubepods/besteffort/pod6a1e4f0c-2b7d-4c3e-8f19-5d0a7b2c9e41
start kubepods-v1 "$kube/$(id_of kubepods-v1)" sleep 1012
settle
run snapB rcprobe snap "$R/snapB"
cp "$R/layout" "$R/snapB/layout"

# ---- C: many processes at once -----------------------------------------

swarm_dir="$V2/system.slice/docker-$(id_of swarm).scope"
mkdir -p "$swarm_dir"
sh -c 'echo $$ >"$0/cgroup.procs" && exec rcprobe swarm 1500 /tmp/swarm-ready' \
	"$swarm_dir" >"$R/swarm.out" 2>&1 &
swarm=$!
echo "swarm $swarm $swarm_dir" >"$R/swarm-layout"
wait_for /tmp/swarm-ready
run snapC rcprobe snap "$R/snapC"
cp "$R/swarm-layout" "$R/snapC/layout"
kill $swarm
wait $swarm
echo $? >"$R/swarm.rc"

# ---- D: read both files while processes fork and exit ------------------

storm_dir="$V2/system.slice/docker-$(id_of storm).scope"
mkdir -p "$storm_dir"
sh -c 'echo $$ >"$0/cgroup.procs" && exec rcprobe storm 150 /tmp/stop-storm' \
	"$storm_dir" >"$R/storm.out" 2>&1 &
storm=$!
timeout 200 rcprobe hammer /proc/rulectl_procs 500 "$R/hammer-procs" \
	>"$R/hammer_procs.out" 2>&1 &
hammer_procs=$!
timeout 200 rcprobe hammer /proc/rulectl_containers 500 \
	"$R/hammer-containers" >"$R/hammer_containers.out" 2>&1 &
hammer_containers=$!
wait $hammer_procs
echo $? >"$R/hammer_procs.rc"
wait $hammer_containers
echo $? >"$R/hammer_containers.rc"
touch /tmp/stop-storm
wait $storm
echo $? >"$R/storm.rc"
say "stress: $(cat "$R/storm.out") / $(cat "$R/hammer_procs.out")" \
	"/ $(cat "$R/hammer_containers.out")"

# ---- E: unload, also with a reader holding the file open ---------------

exec 3</proc/rulectl_procs
run rmmod_procs rmmod rulectl_procs
run read_after_rmmod cat <&3
exec 3<&-
run rmmod_containers rmmod rulectl_containers
run insmod_renamed insmod /lib/rulectl/rulectl_procs.ko procname=rulectl_alt
run cat_renamed cat /proc/rulectl_alt
run rmmod_renamed rmmod rulectl_procs
run insmod_bad_name insmod /lib/rulectl/rulectl_procs.ko procname=a/b
run lsmod_end lsmod

# ---- F: hand the results over -------------------------------------------

dmesg >"$R/dmesg.txt"
dmesg -r >"$R/dmesg-raw.txt"
say "sending results"
stty -F /dev/ttyS1 raw -echo 2>/dev/null
(cd /tmp && tar -cf - results | gzip -c | base64) >/dev/ttyS1
echo "#end" >/dev/ttyS1
say "done"
sync
poweroff -f
