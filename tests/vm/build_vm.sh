#!/usr/bin/env bash
# Builds what the kernel-module tests boot under QEMU: the two modules (built
# against the Debian kernel's headers, not the running kernel's), the static
# helper rcprobe, and a busybox initramfs holding them with init.sh as /init.
#
# Safe to run again and again: it installs the Debian packages it needs only
# when they are missing, and rebuilds everything else (a few seconds).
#
#   tests/vm/build_vm.sh            build into .cache/vm/ in the repository
#   RULECTL_VM_CACHE=/tmp/x ...     build somewhere else
#   RULECTL_VM_KVER=6.1.0-57-amd64  pick the kernel (default: the newest one
#                                   that has both an image and headers)
#
# Writes CACHE/vm.env (KVER, KERNEL, INITRD, MODULES) for the test harness,
# and CACHE/build.log.  Exits non-zero, saying why, if anything is missing or
# the modules build with a warning.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${RULECTL_VM_CACHE:-$repo/.cache/vm}
packages=(linux-image-amd64 linux-headers-amd64 qemu-system-x86
	busybox-static cpio gcc make libc6-dev)

say() {
	echo "build_vm: $*" >&2
}

fail() {
	say "error: $*"
	exit 1
}

install_missing_packages() {
	local missing=() pkg
	for pkg in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -eq 0 ] ||
		fail "missing packages ${missing[*]}; install them as root"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# The newest kernel version with both an image in /boot and a build tree.
pick_kernel() {
	local image version
	if [ -n "${RULECTL_VM_KVER:-}" ]; then
		echo "$RULECTL_VM_KVER"
		return
	fi
	for image in /boot/vmlinuz-*; do
		version=${image#/boot/vmlinuz-}
		[ -f "/usr/src/linux-headers-$version/Makefile" ] &&
			echo "$version"
	done | sort -V | tail -n 1
}

build_modules() {
	local src=$work/kernel
	mkdir -p "$src"
	cp "$repo"/kernel/Makefile "$repo"/kernel/*.c "$repo"/kernel/*.h "$src"/
	make -C "$src" KDIR="$kdir" >"$work/kbuild.log" 2>&1 ||
		{ cat "$work/kbuild.log" >&2; fail "module build failed"; }
	cat "$work/kbuild.log"
	# "Skipping BTF generation" is Kbuild saying the headers lack vmlinux.
	if grep -iE 'warning|error' "$work/kbuild.log"; then
		fail "the module build printed warnings (above)"
	fi
	for ko in rulectl_procs rulectl_containers; do
		modinfo -F vermagic "$src/$ko.ko" | grep -q "^$kver " ||
			fail "$ko.ko was not built for $kver"
	done
}

build_rcprobe() {
	gcc -static -O2 -Wall -Wextra -Werror -pthread \
		-o "$work/rcprobe" "$here/rcprobe.c"
}

build_initramfs() {
	local root=$work/initramfs applet
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/rulectl}
	cp /bin/busybox "$root/bin/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
	done
	cp "$work/rcprobe" "$root/bin/rcprobe"
	cp "$work"/kernel/*.ko "$root/lib/rulectl/"
	install -m 0755 "$here/init.sh" "$root/init"
	# The kernel opens /dev/console for /init before devtmpfs is mounted.
	mknod -m 600 "$root/dev/console" c 5 1
	(cd "$root" && find . -print0 |
		cpio --null -o -H newc -R 0:0 --quiet) |
		gzip -9 >"$cache/initramfs.cpio.gz.tmp"
	mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
}

main() {
	install_missing_packages

	kver=$(pick_kernel)
	[ -n "$kver" ] || fail "no kernel with both /boot/vmlinuz-* and headers"
	kdir=/usr/src/linux-headers-$kver
	[ -f "/boot/vmlinuz-$kver" ] || fail "no /boot/vmlinuz-$kver"
	[ -f "$kdir/Makefile" ] || fail "no kernel headers in $kdir"
	command -v qemu-system-x86_64 >/dev/null ||
		fail "qemu-system-x86_64 is not installed"
	[ -x /bin/busybox ] && /bin/busybox --list | grep -qx sh ||
		fail "/bin/busybox (busybox-static) is missing"

	mkdir -p "$cache"
	# Nothing in the cache belongs in git.
	[ -f "$cache/.gitignore" ] || echo '*' >"$cache/.gitignore"
	exec 9>"$cache/.lock"
	flock 9

	work=$cache/build
	rm -rf "$work"
	mkdir -p "$work"
	say "kernel $kver, building in $work"
	build_modules
	build_rcprobe
	build_initramfs

	cat >"$cache/vm.env" <<EOF
KVER=$kver
KERNEL=/boot/vmlinuz-$kver
INITRD=$cache/initramfs.cpio.gz
MODULES=$work/kernel
EOF
	say "ready: $cache/vm.env"
}

main "$@"
