#!/bin/sh
# PID 1 of the vfio-conformance test VM (harness/vm, docs/vm.md).
#
# The root filesystem is the HOST's /, shared read-only over 9p: this script,
# the host's python3 and the checkout are at the same paths as on the host.
# Nothing here writes to the host: every writable path is a guest tmpfs.
#
# Parameters come from /proc/cmdline (dotted names are not passed to init as
# environment or arguments, so they are read there):
#   vfioconf.checkout=DIR      the checkout (cwd and PYTHONPATH of the agent)
#   vfioconf.python=PATH       the python3 to run the agent with
#   vfioconf.reach=DIR,...     host folders the agent needs (the checkout, the interpreter's
#                              prefixes): one that the guest's tmpfs on /tmp, /run, ... hides
#                              is bind-mounted back from the host's root
#   vfioconf.profile=NAME      exported as VFIO_CONFORMANCE_PROFILE
#   vfioconf.bind=BDF,...      functions to bind to vfio-pci (driver_override + drivers_probe)
#   vfioconf.noreset=BDF,...   functions whose reset_method is cleared before binding
#                              (the QEMU 7.2 NVMe SR-IOV quirk, docs/measured.md)
#   vfioconf.sriov=BDF:N,...   write N to the function's sriov_numvfs after binding
#   vfioconf.topo=1            print every PCI function's sysfs facts ("vfioconf-pci ...")
#   vfioconf.agent=0           do not start the agent: print "vfioconf: ready" and wait
#   vfioconf.shell=1           an interactive shell on the console, the agent in the background
#   vfioconf.pyprobe=1         time a bare python3 start and the import of the kernel backend
#   vfioconf.site=1            run the agent with site-packages (default: python3 -S; the
#                              agent needs only the standard library and the checkout, and
#                              the host's .pth files cost about 5 s under TCG)
# Then it execs `python3 -m harness.agent --channel /dev/virtio-ports/vfioconf.agent --vm`;
# when the agent (or the shell) exits, the guest powers off.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
AGENT_PORT=vfioconf.agent

log() { echo "vfioconf: $*"; }

# Under TCG every exec over 9p costs: the static busybox, when the host has one,
# starts faster than the dynamically linked tools.
BB=/usr/bin/busybox
if [ -x "$BB" ]; then
    mount() { "$BB" mount "$@"; }
    mkdir() { "$BB" mkdir "$@"; }
    ln() { "$BB" ln "$@"; }
    stat() { "$BB" stat "$@"; }
    sleep() { "$BB" sleep "$@"; }
fi

link_name() {  # link_name PATH: the last component of the symlink's target, or "-"
    if [ -e "$1" ]; then
        t=$(cd -P "$1" 2>/dev/null && pwd -P) || t=-
        echo "${t##*/}"
    else
        echo "-"
    fi
}

uptime_now() {
    read -r up _ < /proc/uptime
    echo "$up"
}

power_off() {
    log "power off at $(uptime_now)s"
    if [ -x /usr/bin/busybox ]; then
        /usr/bin/busybox poweroff -f
    fi
    echo o > /proc/sysrq-trigger
    while :; do sleep 60; done
}

mounted() {  # mounted DIR: true when DIR is a mount point
    while read -r _src dir _rest; do
        [ "$dir" = "$1" ] && return 0
    done < /proc/mounts
    return 1
}

mnt() {  # mnt TYPE DIR [OPTIONS]
    mounted "$2" && return 0
    if [ -n "$3" ]; then
        mount -t "$1" -o "$3" "$1" "$2" || log "mount $1 on $2 failed"
    else
        mount -t "$1" "$1" "$2" || log "mount $1 on $2 failed"
    fi
}

mount -t proc proc /proc
mnt sysfs /sys
mnt devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mnt devpts /dev/pts
mnt tmpfs /dev/shm mode=1777
mnt tmpfs /tmp mode=1777
mnt tmpfs /run mode=755
mnt tmpfs /var/tmp mode=1777
mnt debugfs /sys/kernel/debug
log "init at $(uptime_now)s"

# -- parameters ---------------------------------------------------------------
checkout="" python="" reach="" profile="" bind="" noreset="" sriov="" topo=0 agent=1 shell=0 pyprobe=0 site=0
read -r cmdline < /proc/cmdline
for word in $cmdline; do
    case "$word" in
        vfioconf.checkout=*) checkout="${word#*=}" ;;
        vfioconf.python=*) python="${word#*=}" ;;
        vfioconf.reach=*) reach="${word#*=}" ;;
        vfioconf.profile=*) profile="${word#*=}" ;;
        vfioconf.bind=*) bind="${word#*=}" ;;
        vfioconf.noreset=*) noreset="${word#*=}" ;;
        vfioconf.sriov=*) sriov="${word#*=}" ;;
        vfioconf.topo=*) topo="${word#*=}" ;;
        vfioconf.agent=*) agent="${word#*=}" ;;
        vfioconf.shell=*) shell="${word#*=}" ;;
        vfioconf.pyprobe=*) pyprobe="${word#*=}" ;;
        vfioconf.site=*) site="${word#*=}" ;;
    esac
done
[ -n "$python" ] || python=python3
[ -n "$checkout" ] || checkout=/

# -- host folders under the guest's tmpfs --------------------------------------
# A checkout or a venv under /tmp (or /run, /var/tmp) is hidden by the guest's tmpfs mounted
# there.  The host's root, bound once more without those mounts, still shows it: bind each
# such folder from there to its own path.
HOST_ROOT=/run/vfioconf-host
hidden=""
IFS_SAVED=$IFS
IFS=,
for want in $reach; do
    [ -e "$want" ] || hidden="$hidden $want"
done
IFS=$IFS_SAVED
if [ -n "$hidden" ]; then
    mkdir -p "$HOST_ROOT"
    mount -o bind / "$HOST_ROOT" || log "binding the host root on $HOST_ROOT failed"
    for want in $hidden; do   # no whitespace in them: the launcher refuses it
        if mkdir -p "$want" && mount -o bind "$HOST_ROOT$want" "$want"; then
            log "reach $want: bound from the host"
        else
            log "reach $want: binding it from the host failed"
        fi
    done
fi

# -- the virtio-serial port names (udev's job on a full system) ---------------
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    read -r name < "$p/name"
    [ -n "$name" ] && ln -sf "../${p##*/}" "/dev/virtio-ports/$name"
done
[ -e "/dev/virtio-ports/$AGENT_PORT" ] || log "no virtio-serial port named $AGENT_PORT"

# -- binding ------------------------------------------------------------------
PCI=/sys/bus/pci/devices

driver_of() { link_name "$PCI/$1/driver"; }
group_of() { link_name "$PCI/$1/iommu_group"; }

bind_vfio() {
    dev="$PCI/$1"
    if [ ! -e "$dev" ]; then
        log "bind $1: no such function"
        return
    fi
    echo vfio-pci > "$dev/driver_override"
    [ -e "$dev/driver" ] && echo "$1" > "$dev/driver/unbind"
    echo "$1" > /sys/bus/pci/drivers_probe
    log "bind $1: driver=$(driver_of "$1") group=$(group_of "$1")"
}

IFS_SAVED=$IFS
IFS=,
for bdf in $noreset; do
    if [ -e "$PCI/$bdf/reset_method" ]; then
        echo > "$PCI/$bdf/reset_method" && log "reset_method of $bdf cleared"
    fi
done
for bdf in $bind; do
    bind_vfio "$bdf"
done
for spec in $sriov; do
    bdf="${spec%:*}"
    n="${spec##*:}"
    if echo "$n" > "$PCI/$bdf/sriov_numvfs"; then
        log "sriov_numvfs of $bdf set to $n"
    else
        log "sriov_numvfs of $bdf: writing $n failed"
    fi
done
IFS=$IFS_SAVED
log "bound at $(uptime_now)s"

# -- what the guest looks like (host side: harness.vm.observe) ---------------
commas() {  # commas WORD...: the words joined by commas
    IFS=,
    echo "$*"
    IFS=$IFS_SAVED
}

dump_function() {
    bdf=$1
    d="$PCI/$bdf"
    read -r vendor < "$d/vendor"
    read -r device < "$d/device"
    read -r class < "$d/class"
    override="-"
    [ -r "$d/driver_override" ] && read -r override < "$d/driver_override"
    reset="-"
    if [ -r "$d/reset_method" ]; then
        reset=""
        read -r reset < "$d/reset_method"
        [ -n "$reset" ] || reset="none"
    fi
    cdev="-"
    for c in "$d"/vfio-dev/vfio*; do
        [ -e "$c" ] && cdev="${c##*/}"
    done
    numvfs="-" totalvfs="-" physfn="-"
    [ -r "$d/sriov_numvfs" ] && read -r numvfs < "$d/sriov_numvfs"
    [ -r "$d/sriov_totalvfs" ] && read -r totalvfs < "$d/sriov_totalvfs"
    [ -e "$d/physfn" ] && physfn=$(link_name "$d/physfn")
    cfgsize=0
    [ -e "$d/config" ] && cfgsize=$(stat -c %s "$d/config")
    res="" i=0
    while read -r start end flags; do
        [ "$i" -ge 7 ] && break
        res="$res${res:+,}$start:$end:$flags"
        i=$((i + 1))
    done < "$d/resource"
    echo "vfioconf-pci bdf=$bdf vendor=$vendor device=$device class=$class driver=$(driver_of "$bdf")" \
        "override=${override:--} group=$(group_of "$bdf") cdev=$cdev reset=$(commas $reset)" \
        "numvfs=$numvfs totalvfs=$totalvfs physfn=$physfn cfgsize=$cfgsize res=$res"
}

if [ "$topo" = 1 ]; then
    for d in "$PCI"/*; do
        dump_function "${d##*/}"
    done
    nodes=""
    for n in /dev/vfio/* /dev/vfio/devices/* /dev/iommu; do
        [ -e "$n" ] && [ ! -d "$n" ] && nodes="$nodes $n"
    done
    echo "vfioconf-nodes$nodes"
    while read -r key value _unit; do
        case "$key" in
            MemTotal:|MemAvailable:|HugePages_Total:|HugePages_Free:) echo "vfioconf-mem $key $value" ;;
        esac
    done < /proc/meminfo
    param=/sys/module/vfio_pci/parameters/enable_sriov
    if [ -r "$param" ]; then
        read -r enable_sriov < "$param"
        echo "vfioconf-param vfio_pci.enable_sriov=$enable_sriov"
    fi
    log "topology printed at $(uptime_now)s"
fi

# -- the agent ----------------------------------------------------------------
interactive_shell() {
    # A controlling tty, so that job control and ^C work, when busybox is there.
    if [ -x /usr/bin/busybox ]; then
        /usr/bin/busybox setsid /usr/bin/busybox cttyhack /bin/sh
    else
        /bin/sh
    fi
}

VFIO_CONFORMANCE_VM=1
VFIO_CONFORMANCE_PROFILE=$profile
HOME=/tmp
TMPDIR=/tmp
LANG=C.UTF-8
PYTHONPATH=$checkout
PYTHONDONTWRITEBYTECODE=1
PYTHONUNBUFFERED=1
export VFIO_CONFORMANCE_VM VFIO_CONFORMANCE_PROFILE HOME TMPDIR LANG PYTHONPATH PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED
cd "$checkout" || log "cd $checkout failed"

if [ "$pyprobe" = 1 ]; then
    t0=$(uptime_now)
    "$python" -c 'import os'
    t1=$(uptime_now)
    "$python" -S -c 'import os'
    t2=$(uptime_now)
    "$python" -S -c 'import harness.backends.kernel'
    t3=$(uptime_now)
    log "pyprobe: python3 -c 'import os' $t0-$t1 s; with -S $t1-$t2 s; -S import harness.backends.kernel $t2-$t3 s"
fi

if [ "$agent" = 0 ]; then
    log "ready at $(uptime_now)s (no agent)"
    if [ "$shell" = 1 ]; then
        interactive_shell
        power_off
    fi
    while :; do sleep 3600; done
fi

nosite=-S
[ "$site" = 1 ] && nosite=
log "agent starting at $(uptime_now)s"
if [ "$shell" = 1 ]; then
    "$python" $nosite -m harness.agent --channel "/dev/virtio-ports/$AGENT_PORT" --vm &
    log "agent in the background (pid $!); exit the shell to power off"
    interactive_shell
else
    "$python" $nosite -m harness.agent --channel "/dev/virtio-ports/$AGENT_PORT" --vm
    log "agent exited with status $?"
fi
power_off
