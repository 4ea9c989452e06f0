#!/usr/bin/env bash
# node.sh - boot a real Debian 12 (bookworm) systemd "node" for integration
# tests, isolated from the host.
#
# The node's systemd runs as PID 1 inside new pid, mount, net, uts, ipc and
# cgroup namespaces, pivot_root'ed into an overlayfs whose lower layer is an
# mmdebstrap-built rootfs (cached) and whose upper layer lives in DIR/upper.
# It gets its own /dev (tmpfs + a few device nodes, devpts, shm), /proc,
# /run and /tmp (tmpfs), a read-only /sys and a cgroup2 mount rooted at a
# dedicated sub-cgroup of the caller's cgroup. All of its mounts exist only in
# the node's private mount namespace, so nothing is mounted on the host and
# everything vanishes with the node's last process. Only loopback networking.
#
# Usage:
#   node.sh rootfs                    build (once) the cached rootfs; prints its tarball path
#   node.sh boot DIR                  boot a fresh node in DIR (DIR must not exist or be empty)
#   node.sh exec DIR CMD [ARG...]     run CMD inside the node (stdio + exit code propagated)
#   node.sh cp-in DIR HOSTFILE NODEPATH   copy a host file into the node
#   node.sh restart DIR [--hard]      power the node off and boot it again on the same root
#                                     (--hard: a power cut, every process SIGKILLed at once)
#   node.sh stop DIR                  power off, kill leftovers, remove cgroup and DIR
#   node.sh pid DIR                   print the host pid of the node's PID 1
#
# Environment:
#   SOCKVISOR_NODE_CACHE         cache directory (default /var/cache/sockvisor-node)
#   SOCKVISOR_NODE_MIRROR        one-line apt source(s) for bookworm, ';'-separated
#                                (default: derived from the host's apt sources)
#   SOCKVISOR_NODE_BOOT_TIMEOUT  seconds to wait for the boot (default 120)
#   SOCKVISOR_NODE_OWNER         host pid; when it dies the node is stopped
#                                automatically (safety net for killed test runs)
#   SOCKVISOR_NODE_KEEP_FAILED=1 do not tear down a node whose boot timed out
set -euo pipefail

# Bump when the rootfs recipe (packages aside) changes; part of the cache key.
NODE_SCRIPT_VERSION=2
SUITE=bookworm
PACKAGES=(systemd systemd-sysv dbus apache2 gunicorn python3-gunicorn php-fpm curl procps iproute2 ca-certificates less
	# [M] the provisioning tests: Ansible's apt module needs python3-apt on
	# the target; the cloud-init recipe runs inside the node.
	python3-apt cloud-init)
# Units that cannot work (or are pointless) in this container.
MASK_UNITS=(
	systemd-networkd-wait-online.service systemd-timesyncd.service
	getty@.service serial-getty@.service console-getty.service getty-static.service
	systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
	systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service
	apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service
	e2scrub_all.timer e2scrub_all.service e2scrub_reap.service fstrim.timer fstrim.service
	man-db.timer man-db.service dpkg-db-backup.timer dpkg-db-backup.service
	systemd-remount-fs.service systemd-firstboot.service systemd-sysctl.service
	systemd-modules-load.service kmod-static-nodes.service systemd-pstore.service
	systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
	sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
	sys-fs-fuse-connections.mount dev-hugepages.mount systemd-journald-audit.socket
	# [M] cloud-init never runs at boot: the provisioning test runs its
	# stages by hand, and the other tests boot a node without it.
	cloud-init-local.service cloud-init.service cloud-config.service cloud-final.service
)
NODE_HOSTNAME=sockvisor-node
DROP_CAPS=-sys_module,-sys_rawio,-sys_time,-sys_pacct,-sys_tty_config,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-audit_control,-audit_read,-bpf,-perfmon
NODE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

CACHE_DIR=${SOCKVISOR_NODE_CACHE:-/var/cache/sockvisor-node}
BOOT_TIMEOUT=${SOCKVISOR_NODE_BOOT_TIMEOUT:-120}
SELF=$(readlink -f "${BASH_SOURCE[0]}")
MARKER=.sockvisor-node # present in every DIR we manage; nothing else is ever removed

log() { printf 'node.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# ---------------------------------------------------------------- rootfs ---

# apt source lines for bookworm, taken from the host's configuration.
mirror_lines() {
	if [[ -n ${SOCKVISOR_NODE_MIRROR:-} ]]; then
		tr ';' '\n' <<<"$SOCKVISOR_NODE_MIRROR" | sed '/^[[:space:]]*$/d'
		return
	fi
	local out
	out=$(
		{
			grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
				awk '{o=""; i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				      if ($(i+1) ~ /^bookworm/) { o="deb " $i; for (j=i+1; j<=NF; j++) o=o " " $j; print o } }' || true
			for f in /etc/apt/sources.list.d/*.sources; do
				[[ -f $f ]] || continue
				# deb822: one stanza per paragraph.
				awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no")
				        { n=split(uris,U," "); m=split(suites,S," ");
				          for (a=1;a<=n;a++) for (b=1;b<=m;b++) if (S[b] ~ /^bookworm/) print "deb " U[a] " " S[b] " " comps }
				        types=uris=suites=comps=enabled="" }
				     /^[[:space:]]*$/ { flush(); next } /^#/ { next }
				     { k=tolower($1); sub(/:$/,"",k); $1=""; sub(/^ /,"");
				       if (k=="types") types=$0; else if (k=="uris") uris=$0; else if (k=="suites") suites=$0;
				       else if (k=="components") comps=$0; else if (k=="enabled") enabled=tolower($0) }
				     END { flush() }' "$f"
			done
		} | awk '!seen[$0]++'
	)
	if [[ -z $out ]]; then
		out=$'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main'
	fi
	printf '%s\n' "$out"
}

cache_key() {
	{
		echo "version=$NODE_SCRIPT_VERSION suite=$SUITE arch=$(dpkg --print-architecture 2>/dev/null || uname -m)"
		echo "packages=${PACKAGES[*]}"
		echo "mask=${MASK_UNITS[*]}"
		mirror_lines
	} | sha256sum | cut -c1-16
}

# Runs inside mmdebstrap's customize hook with the chroot path as $1.
customize_rootfs() {
	local root=$1 u
	[[ -n $root && $root != / && -d $root/etc ]] || die "customize: bad root '$root'"
	echo "$NODE_HOSTNAME" >"$root/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$NODE_HOSTNAME" >"$root/etc/hosts"
	chmod 644 "$root/etc/hostname" "$root/etc/hosts"
	# Root has no usable password: nobody ever logs in.
	sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
	mkdir -p "$root/etc/systemd/system"
	for u in "${MASK_UNITS[@]}"; do
		ln -sfn /dev/null "$root/etc/systemd/system/$u"
	done
	mkdir -p "$root/etc/systemd/system.conf.d"
	printf '[Manager]\nDefaultTimeoutStartSec=60s\nDefaultTimeoutStopSec=15s\n' \
		>"$root/etc/systemd/system.conf.d/10-sockvisor-node.conf"
	# The node has no network: never try to reach a mirror from inside.
	printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/99sockvisor-node"
	# A fresh machine-id is written at every first boot of a node.
	: >"$root/etc/machine-id"
	echo "$NODE_SCRIPT_VERSION" >"$root/etc/sockvisor-node-release"
}

rootfs_tarball() { echo "$CACHE_DIR/rootfs-$(cache_key).tar.zst"; }

cmd_rootfs() {
	need_root
	command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
	command -v zstd >/dev/null || die "zstd not found (apt-get install zstd)"
	mkdir -p "$CACHE_DIR"
	local tar; tar=$(rootfs_tarball)
	exec 9>"$CACHE_DIR/.lock"
	flock 9
	if [[ -s $tar ]]; then
		log "using cached rootfs $tar"
		echo "$tar"
		return
	fi
	local tmp="$CACHE_DIR/.build-$$" start
	# Leftovers of interrupted builds (we hold the lock: none is running).
	rm -rf --one-file-system "$CACHE_DIR"/.build-*
	mkdir -p "$tmp/tmp"
	mirror_lines >"$tmp/sources.list"
	log "building rootfs $tar from:"; sed 's/^/    /' "$tmp/sources.list" >&2
	start=$(date +%s)
	local incl; incl=$(IFS=,; echo "${PACKAGES[*]}")
	# Private mount/pid/uts/ipc namespaces: whatever mmdebstrap mounts or
	# starts during the build cannot leak onto the host.
	if ! TMPDIR="$tmp/tmp" unshare --mount --propagation private --pid --fork --uts --ipc -- \
		mmdebstrap --mode=root --variant=minbase --format=tar \
		--include="$incl" \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		--aptopt='Acquire::Retries "3"' \
		--customize-hook="\"$SELF\" __customize \"\$1\"" \
		"$SUITE" "$tmp/rootfs.tar.zst" "$tmp/sources.list"; then
		rm -rf "$tmp"
		die "mmdebstrap failed"
	fi
	mv "$tmp/rootfs.tar.zst" "$tar"
	rm -rf "$tmp"
	log "rootfs built in $(($(date +%s) - start))s: $tar ($(du -h "$tar" | cut -f1))"
	prune_cache "$tar"
	echo "$tar"
}

# Removes rootfs builds with other keys unless a running node still uses them
# as its overlay lower layer.
prune_cache() {
	local keep=${1%.tar.zst} old
	local -A seen=()
	for old in "$CACHE_DIR"/rootfs-*; do
		old=${old%.tar.zst}
		[[ $old != "$keep" && $old != *.tmp && -z ${seen[$old]:-} ]] || continue
		seen[$old]=1
		[[ -e $old || -e $old.tar.zst ]] || continue
		if grep -qsF "lowerdir=$old," /proc/[0-9]*/mountinfo; then
			log "keeping $old (in use by a running node)"
			continue
		fi
		log "pruning old rootfs $old"
		rm -rf --one-file-system "$old" "$old.tar.zst" "$old.tmp"
	done
}

# Unpacked copy of the tarball, used read-only as the overlayfs lower layer.
ensure_lower() {
	local tar lower
	tar=$(cmd_rootfs)
	lower=${tar%.tar.zst}
	exec 9>"$CACHE_DIR/.lock"
	flock 9
	if [[ ! -d $lower ]]; then
		rm -rf "$lower.tmp"; mkdir -p "$lower.tmp"
		tar --zstd -xpf "$tar" -C "$lower.tmp" --numeric-owner --xattrs --xattrs-include='*'
		mv "$lower.tmp" "$lower"
	fi
	flock -u 9
	echo "$lower"
}

# ------------------------------------------------------------- helpers ---

abs_dir() { [[ -n ${1:-} ]] || die "missing DIR"; readlink -m -- "$1"; }

check_dir() {
	[[ -f $1/$MARKER ]] || die "$1 is not a node directory (no $MARKER)"
}

lock_dir() { exec 8<"$1"; flock 8; }

# Host path of the cgroup2 hierarchy.
cgroup2_mount() {
	local m
	m=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
	[[ -n $m ]] || die "no cgroup2 hierarchy mounted on the host"
	echo "$m"
}

# pid of the node's PID 1 if it is alive and really ours, else empty.
node_pid() {
	local dir=$1 pid cg
	[[ -f $dir/pid && -f $dir/cgroup ]] || return 0
	pid=$(<"$dir/pid"); cg=$(<"$dir/cgroup")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	[[ -d /proc/$pid ]] || return 0
	# Guards against pid reuse: PID 1 lives in the node's own cgroup.
	local mnt; mnt=$(cgroup2_mount)
	local line; line=$(grep '^0::' "/proc/$pid/cgroup" 2>/dev/null) || return 0
	[[ ${line#0::} == "${cg#"$mnt"}"/* ]] || return 0
	echo "$pid"
}

cgroup_pids() { find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }

# Kill everything in the node's cgroup tree and remove it.
cgroup_destroy() {
	local cg=$1 i p
	[[ -d $cg ]] || return 0
	for i in $(seq 1 100); do
		[[ -n $(cgroup_pids "$cg") ]] || break
		if [[ -f $cg/cgroup.kill ]]; then
			echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
		else
			for p in $(cgroup_pids "$cg"); do kill -KILL "$p" 2>/dev/null || true; done
		fi
		sleep 0.1
	done
	[[ -z $(cgroup_pids "$cg") ]] || log "warning: processes left in $cg: $(cgroup_pids "$cg" | tr '\n' ' ')"
	# Depth first: systemd inside created its own sub-cgroups.
	find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
	for i in $(seq 1 50); do
		[[ -d $cg ]] || return 0
		find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
		sleep 0.1
	done
	log "warning: could not remove cgroup $cg"
}

# Lists host mount points at or below $1, deepest first.
mounts_under() {
	awk -v d="$1" '{ p=$5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' /proc/self/mountinfo | sort -r
}

# Stops PID 1 and every other process of the node; keeps DIR. With "hard",
# nothing shuts down cleanly: a power cut.
halt_node() {
	local dir=$1 hard=${2:-} pid cg i
	cg=$(cat "$dir/cgroup" 2>/dev/null || true)
	pid=$(node_pid "$dir")
	if [[ -n $pid && $hard == hard ]]; then
		# SIGKILL to a pid namespace's init kills every process in it.
		kill -KILL "$pid" 2>/dev/null || true
		for i in $(seq 0 100); do
			[[ -d /proc/$pid ]] || break
			sleep 0.05
		done
	elif [[ -n $pid ]]; then
		# SIGRTMIN+4 = poweroff; systemd exits once the shutdown is done.
		# Re-sent every second: the kernel drops it while PID 1 has no
		# handler yet (very early boot).
		for i in $(seq 0 299); do
			((i % 10)) || kill -s RTMIN+4 "$pid" 2>/dev/null || true
			sleep 0.1
			[[ -d /proc/$pid ]] || break
		done
		if [[ -d /proc/$pid ]]; then
			log "node did not power off within 30s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	[[ -z $cg ]] || cgroup_destroy "$cg"
	# The unshare parent exits with its child; make sure.
	if [[ -f $dir/unshare.pid ]]; then
		local up; up=$(<"$dir/unshare.pid")
		if [[ -r /proc/$up/cmdline ]] && tr '\0' ' ' <"/proc/$up/cmdline" | grep -qF -- "__init $dir"; then
			kill -KILL "$up" 2>/dev/null || true
		fi
	fi
	rm -f "$dir/pid" "$dir/unshare.pid"
	# The node's mounts live in its own mount namespace; there should be
	# nothing on the host. Unmount defensively anyway.
	local m
	while read -r m; do
		[[ -n $m ]] || continue
		log "unmounting leftover $m"
		umount "$m" 2>/dev/null || umount -l "$m" || true
	done < <(mounts_under "$dir")
}

# ---------------------------------------------------------------- boot ---

# Second stage, run by unshare as PID 1 of the new namespaces.
stage_init() {
	local dir=$1 lower root i
	lower=$(<"$dir/lower"); root=$dir/root
	# Nothing done here may propagate to the host.
	mount --make-rprivate /
	for i in $(seq 1 50); do
		mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$root" && break
		[[ $i -lt 50 ]] || die "cannot mount overlay"
		sleep 0.2
	done
	# First boot of this DIR: give it its own machine-id.
	if [[ ! -s $root/etc/machine-id ]] || grep -q uninitialized "$root/etc/machine-id"; then
		od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
		echo >>"$root/etc/machine-id"
	fi
	# /proc (for the new pid namespace); kernel knobs read-only except net.
	mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
	mount --bind "$root/proc/sys" "$root/proc/sys"
	mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
	mount -o remount,bind,ro,nosuid,nodev,noexec "$root/proc/sys"
	for i in sysrq-trigger irq bus; do
		[[ -e $root/proc/$i ]] || continue
		mount --bind "$root/proc/$i" "$root/proc/$i"
		mount -o remount,bind,ro "$root/proc/$i"
	done
	# /sys read-only (fresh instance for the new netns) + our cgroup2.
	mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
	mount -t cgroup2 -o rw,nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
	# /dev: tmpfs with the basic nodes, its own devpts and shm.
	mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs "$root/dev"
	mknod -m 666 "$root/dev/null" c 1 3
	mknod -m 666 "$root/dev/zero" c 1 5
	mknod -m 666 "$root/dev/full" c 1 7
	mknod -m 666 "$root/dev/random" c 1 8
	mknod -m 666 "$root/dev/urandom" c 1 9
	mknod -m 666 "$root/dev/tty" c 5 0
	mkdir -m 755 "$root/dev/pts"
	mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$root/dev/pts"
	ln -s pts/ptmx "$root/dev/ptmx"
	mkdir -m 1777 "$root/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
	# /dev/console: systemd's own status output is dropped (the journal has it).
	touch "$root/dev/console"
	mount --bind "$root/dev/null" "$root/dev/console"
	ln -s /proc/self/fd "$root/dev/fd"
	ln -s /proc/self/fd/0 "$root/dev/stdin"
	ln -s /proc/self/fd/1 "$root/dev/stdout"
	ln -s /proc/self/fd/2 "$root/dev/stderr"
	ln -s /proc/kcore "$root/dev/core"
	# /run and /tmp are the node's own tmpfs.
	mount -t tmpfs -o mode=755,nosuid,nodev,size=20% tmpfs "$root/run"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
	hostname "$NODE_HOSTNAME"
	# Like a real boot: services get 1024:524288 (dbus wants more). Needs
	# CAP_SYS_RESOURCE; skipped where the host withholds it.
	ulimit -Hn 524288 2>/dev/null && ulimit -Sn 1024 || true
	# pivot_root into the node and drop every host mount.
	cd "$root"
	pivot_root . .
	umount -l .
	cd /
	# Drop what a container has no business with (nspawn drops these too):
	# no kernel modules, raw I/O, clock, accounting, console or LSM changes.
	exec /usr/bin/setpriv --bounding-set "$DROP_CAPS" -- \
		/usr/bin/env -i container=sockvisor-node PATH="$NODE_PATH" LANG=C.UTF-8 /sbin/init
}

# Watchdog: stop the node when its owner process dies (e.g. killed test run).
stage_watchdog() {
	local dir=$1 owner=$2 start=$3
	while [[ -f $dir/$MARKER ]]; do
		if [[ ! -r /proc/$owner/stat ]] || [[ $(awk '{print $22}' "/proc/$owner/stat" 2>/dev/null) != "$start" ]]; then
			log "owner $owner of $dir is gone; stopping the node"
			rm -f "$dir/watchdog.pid"
			exec "$SELF" stop "$dir"
		fi
		sleep 1
	done
}

# Closes every fd above 2 (lock fds must not leak into long-lived children).
close_fds() {
	local f
	for f in /proc/$BASHPID/fd/*; do
		f=${f##*/}
		((f > 2)) && eval "exec $f>&-" 2>/dev/null || true
	done
}
export -f close_fds

start_node() {
	local dir=$1 cg=$2 upid pid i
	mkdir -p "$cg/node" "$cg/exec"
	: >>"$dir/console.log"
	# The launcher moves itself into the node cgroup *before* unsharing the
	# cgroup namespace, so the namespace is rooted there.
	setsid bash -c 'close_fds; echo $$ >"$1/node/cgroup.procs" && exec unshare --pid --mount --net --uts --ipc --cgroup \
		--fork --kill-child --propagation private -- "$2" __init "$3"' _ "$cg" "$SELF" "$dir" \
		</dev/null >>"$dir/console.log" 2>&1 &
	upid=$!
	disown "$upid" 2>/dev/null || true # no "Killed" job notices at stop
	echo "$upid" >"$dir/unshare.pid"
	for i in $(seq 1 100); do
		pid=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}') || true
		[[ -z $pid ]] || break
		[[ -d /proc/$upid ]] || break
		sleep 0.05
	done
	[[ -n $pid ]] || { cat "$dir/console.log" >&2; die "node launcher exited early"; }
	echo "$pid" >"$dir/pid"
}

node_status() { "$SELF" exec "$1" systemctl is-system-running 2>/dev/null || true; }

wait_ready() {
	local dir=$1 pid=$2 deadline state=
	deadline=$((SECONDS + BOOT_TIMEOUT))
	while ((SECONDS < deadline)); do
		[[ -d /proc/$pid ]] || { log "node PID 1 died during boot"; tail -n 50 "$dir/console.log" >&2; return 1; }
		state=$(node_status "$dir")
		case $state in
		running | degraded) log "node up ($state) in $dir, PID 1 = host pid $pid"; return 0 ;;
		esac
		sleep 0.5
	done
	log "node did not finish booting within ${BOOT_TIMEOUT}s (state: ${state:-unknown})"
	"$SELF" exec "$dir" systemctl --no-pager --failed >&2 || true
	"$SELF" exec "$dir" systemctl --no-pager list-jobs >&2 || true
	"$SELF" exec "$dir" journalctl --no-pager -n 80 >&2 || true
	tail -n 30 "$dir/console.log" >&2 || true
	return 1
}

# EXIT trap while booting: a failed or interrupted boot leaves nothing behind.
BOOT_DIR=
boot_guard() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [[ $rc != 0 && -n $BOOT_DIR ]]; then
		if [[ ${SOCKVISOR_NODE_KEEP_FAILED:-0} == 1 ]]; then
			log "keeping failed node in $BOOT_DIR (node.sh stop $BOOT_DIR to clean up)"
		else
			log "boot failed; tearing down $BOOT_DIR"
			(cmd_stop_locked "$BOOT_DIR") || true
		fi
	fi
	exit "$rc"
}

boot_existing() {
	local dir=$1 cg pid
	BOOT_DIR=$dir
	trap boot_guard EXIT
	trap 'exit 130' INT TERM HUP
	cg=$(<"$dir/cgroup")
	start_node "$dir" "$cg"
	pid=$(<"$dir/pid")
	wait_ready "$dir" "$pid" || exit 1
	BOOT_DIR=
	trap - EXIT INT TERM HUP
}

cmd_boot() {
	need_root
	local dir lower cg owner
	dir=$(abs_dir "${1:-}")
	[[ $dir != / ]] || die "refusing /"
	trap boot_guard EXIT
	trap 'exit 130' INT TERM HUP
	if [[ -e $dir ]]; then
		[[ -d $dir && -z $(ls -A "$dir") ]] || die "$dir exists and is not empty"
	fi
	for t in unshare nsenter setsid pivot_root mount flock zstd; do
		command -v "$t" >/dev/null || die "$t not found"
	done
	lower=$(ensure_lower)
	mkdir -p "$dir"
	BOOT_DIR=$dir
	touch "$dir/$MARKER"
	lock_dir "$dir"
	mkdir -p "$dir/upper" "$dir/work" "$dir/root"
	echo "$lower" >"$dir/lower"
	cg=$(cgroup2_mount)$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
	cg=${cg%/}/sockvisor-node.$(echo "$dir" | sha256sum | cut -c1-12)
	[[ ! -e $cg ]] || cgroup_destroy "$cg" # leftover of a crashed run on the same DIR
	mkdir -p "$cg"
	echo "$cg" >"$dir/cgroup"
	owner=${SOCKVISOR_NODE_OWNER:-}
	if [[ -n $owner ]]; then
		local start; start=$(awk '{print $22}' "/proc/$owner/stat") || die "owner $owner not running"
		(close_fds; exec setsid "$SELF" __watchdog "$dir" "$owner" "$start") </dev/null >>"$dir/console.log" 2>&1 &
		echo $! >"$dir/watchdog.pid"
	fi
	boot_existing "$dir"
}

cmd_restart() {
	need_root
	local dir hard=
	dir=$(abs_dir "${1:-}")
	case ${2:-} in
	"") ;;
	--hard) hard=hard ;;
	*) die "usage: node.sh restart DIR [--hard]" ;;
	esac
	check_dir "$dir"
	lock_dir "$dir"
	halt_node "$dir" "$hard"
	boot_existing "$dir"
}

cmd_stop_locked() {
	local dir=$1 w
	halt_node "$dir"
	if [[ -f $dir/watchdog.pid ]]; then
		w=$(<"$dir/watchdog.pid")
		if [[ $w != "$$" && -r /proc/$w/cmdline ]] && tr '\0' ' ' <"/proc/$w/cmdline" | grep -qF -- "__watchdog $dir "; then
			kill "$w" 2>/dev/null || true
		fi
	fi
	[[ -z $(mounts_under "$dir") ]] || die "mounts remain under $dir; not removing it"
	rm -rf --one-file-system -- "$dir"
}

cmd_stop() {
	need_root
	local dir; dir=$(abs_dir "${1:-}")
	[[ -d $dir ]] || return 0
	check_dir "$dir"
	lock_dir "$dir"
	[[ -f $dir/$MARKER ]] || return 0 # stopped by someone else meanwhile
	cmd_stop_locked "$dir"
}

cmd_exec() {
	local dir pid cg
	dir=$(abs_dir "${1:-}"); shift || true
	[[ $# -gt 0 ]] || die "usage: node.sh exec DIR CMD [ARG...]"
	check_dir "$dir"
	pid=$(node_pid "$dir")
	[[ -n $pid ]] || die "node in $dir is not running"
	cg=$(<"$dir/cgroup")
	# Run in the node's cgroup tree (outside its cgroup-namespace root) so
	# that stop can always find and kill it.
	echo "$BASHPID" >"$cg/exec/cgroup.procs"
	exec nsenter --target "$pid" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
		/usr/bin/env -i container=sockvisor-node PATH="$NODE_PATH" HOME=/root LANG=C.UTF-8 \
		TERM="${TERM:-dumb}" SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 "$@"
}

cmd_cp_in() {
	local dir=${1:-} src=${2:-} dst=${3:-} mode
	[[ -n $dir && -n $src && -n $dst ]] || die "usage: node.sh cp-in DIR HOSTFILE NODEPATH"
	[[ -f $src ]] || die "$src is not a regular file"
	[[ $dst == /* ]] || die "NODEPATH must be absolute"
	mode=$(stat -L -c %a "$src")
	# Streamed through the node's own namespaces so that symlinks in NODEPATH
	# resolve inside the node, never on the host.
	"$SELF" exec "$dir" sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1.sockvisor-tmp" && chmod "$2" "$1.sockvisor-tmp" && mv -f "$1.sockvisor-tmp" "$1"' \
		_ "$dst" "$mode" <"$src"
}

cmd_pid() {
	local dir pid; dir=$(abs_dir "${1:-}")
	check_dir "$dir"
	pid=$(node_pid "$dir")
	[[ -n $pid ]] || die "node in $dir is not running"
	echo "$pid"
}

usage() { sed -n '/^# Usage:/,/^# Environment:/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

main() {
	local sub=${1:-}
	shift || true
	case $sub in
	rootfs) cmd_rootfs ;;
	boot) cmd_boot "$@" ;;
	exec) cmd_exec "$@" ;;
	cp-in) cmd_cp_in "$@" ;;
	restart) cmd_restart "$@" ;;
	stop) cmd_stop "$@" ;;
	pid) cmd_pid "$@" ;;
	__customize) customize_rootfs "$@" ;;
	__init) stage_init "$@" ;;
	__watchdog) stage_watchdog "$@" ;;
	*) usage ;;
	esac
}

main "$@"
