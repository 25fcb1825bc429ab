"""The sanitizer kernel's reports (kernel build --sanitizers) are splats of the case running.

The console texts follow the printk formats of Linux 6.12 (mm/kasan/report.c, lib/ubsan.c,
kernel/locking/lockdep.c, lib/debugobjects.c, kernel/sched/core.c), with timestamps as the
guest logs them.
"""

from __future__ import annotations

from harness.vm import console

BOOT_NOISE = """\
[    0.000000] Linux version 6.12.118 (root@host) (gcc (Debian 14.2.0-19) 14.2.0) #1 SMP PREEMPT_DYNAMIC
[    0.101234] kasan: KernelAddressSanitizer initialized
[    0.203456] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[    0.203457] ... MAX_LOCKDEP_SUBCLASSES:  8
[    0.203458] ... MAX_LOCK_DEPTH:          48
[    0.351000] ODEBUG: selftest passed
[    1.402000] iommufd: IOMMUFD is available
vfioconf: init at 9.12s
"""

KASAN_UAF = """\
[   61.204711] ==================================================================
[   61.205290] BUG: KASAN: slab-use-after-free in iopt_area_unfill_domain+0x4a/0x2c0
[   61.205903] Read of size 8 at addr ffff8880064d2a18 by task python3/318
[   61.206420]
[   61.206551] CPU: 0 UID: 0 PID: 318 Comm: python3 Not tainted 6.12.118 #1
[   61.207063] Call Trace:
[   61.207260]  <TASK>
[   61.207431]  dump_stack_lvl+0x5d/0x80
[   61.207702]  print_report+0x171/0x4e0
[   61.207973]  kasan_report+0xb4/0xf0
[   61.208230]  iopt_area_unfill_domain+0x4a/0x2c0
[   61.208550]  iommufd_hwpt_paging_destroy+0x31/0x80
[   61.208890]  iommufd_fops_ioctl+0x1b3/0x240
[   61.209190]  __x64_sys_ioctl+0x94/0xd0
[   61.209460]  do_syscall_64+0x9e/0x1a0
[   61.209730]  </TASK>
[   61.209900]
[   61.210031] Allocated by task 318:
[   61.210290]  kasan_save_stack+0x22/0x50
[   61.210560]  __kasan_kmalloc+0x8f/0xa0
[   61.210830]  iopt_alloc_area_pages+0x6e/0x1f0
[   61.211140]
[   61.211270] Freed by task 318:
[   61.211510]  kasan_save_stack+0x22/0x50
[   61.211780]  kfree+0xd3/0x3b0
[   61.212020]
[   61.212150] The buggy address belongs to the object at ffff8880064d2a00
[   61.212150]  which belongs to the cache kmalloc-128 of size 128
[   61.212800] ==================================================================
[   61.213320] Disabling lock debugging due to kernel taint
"""

UBSAN_SHIFT = """\
[   73.510004] ------------[ cut here ]------------
[   73.510502] UBSAN: shift-out-of-bounds in drivers/iommu/iommufd/io_pagetable.c:612:23
[   73.511115] shift exponent 64 is too large for 64-bit type 'long unsigned int'
[   73.511701] CPU: 0 UID: 0 PID: 325 Comm: python3 Not tainted 6.12.118 #1
[   73.512260] Call Trace:
[   73.512451]  <TASK>
[   73.512620]  dump_stack_lvl+0x5d/0x80
[   73.512890]  __ubsan_handle_shift_out_of_bounds+0x1e9/0x370
[   73.513280]  iopt_check_iova+0x7c/0x90
[   73.513550]  iommufd_ioas_map+0x10b/0x1f0
[   73.513840]  </TASK>
[   73.514010] ---[ end trace ]---
"""

CIRCULAR = """\
[   88.120001] ======================================================
[   88.120502] WARNING: possible circular locking dependency detected
[   88.121003] 6.12.118 #1 Not tainted
[   88.121504] ------------------------------------------------------
[   88.122005] python3/412 is trying to acquire lock:
[   88.122506] ffff888004a1c0b8 (&vdev->dev_set->lock){+.+.}-{4:4}, at: vfio_df_open+0x2d/0x150
[   88.123007]
               but task is already holding lock:
[   88.123508] ffff888004b2d0a0 (&group->group_lock){+.+.}-{4:4}, at: vfio_group_fops_unl_ioctl+0x58/0x1a0
[   88.124009]
               which lock already depends on the new lock.

[   88.124510]
               the existing dependency chain (in reverse order) is:
[   88.125011]
               -> #1 (&group->group_lock){+.+.}-{4:4}:
[   88.125512]        __mutex_lock+0x9b/0x9d0
[   88.126013]        vfio_group_fops_unl_ioctl+0x58/0x1a0
[   88.126514]
               -> #0 (&vdev->dev_set->lock){+.+.}-{4:4}:
[   88.127015]        __lock_acquire+0x1463/0x2400
[   88.127516]        vfio_df_open+0x2d/0x150
[   88.128017]
               other info that might help us debug this:

[   88.128518]  Possible unsafe locking scenario:

[   88.129019]        CPU0                    CPU1
[   88.129520]        ----                    ----
[   88.130021]   lock(&group->group_lock);
[   88.130522]                                lock(&vdev->dev_set->lock);
[   88.131023]                                lock(&group->group_lock);
[   88.131524]   lock(&vdev->dev_set->lock);
[   88.132025]
                *** DEADLOCK ***

[   88.132526] 1 lock held by python3/412:
[   88.133027]  #0: ffff888004b2d0a0 (&group->group_lock){+.+.}-{4:4}, at: vfio_group_fops_unl_ioctl+0x58/0x1a0
[   88.133528]
               stack backtrace:
[   88.134029] CPU: 0 UID: 0 PID: 412 Comm: python3 Not tainted 6.12.118 #1
[   88.134530] Call Trace:
[   88.135031]  <TASK>
[   88.135532]  dump_stack_lvl+0x75/0x80
[   88.136033]  print_circular_bug+0x26a/0x340
[   88.136534]  vfio_df_open+0x2d/0x150
[   88.137035]  </TASK>
"""

RECURSIVE = """\
[   90.000001] ============================================
[   90.000502] WARNING: possible recursive locking detected
[   90.001003] 6.12.118 #1 Not tainted
[   90.001504] --------------------------------------------
[   90.002005] python3/415 is trying to acquire lock:
[   90.002506] ffff888004c3e120 (&ictx->ioas_creation_lock){+.+.}-{4:4}, at: iommufd_ioas_alloc_ioctl+0x2d/0x150
[   90.003007]
               but task is already holding lock:
[   90.003508] ffff888004c3e120 (&ictx->ioas_creation_lock){+.+.}-{4:4}, at: iommufd_ioas_alloc_ioctl+0x2d/0x150
[   90.004009]
               other info that might help us debug this:
[   90.004510]  Possible unsafe locking scenario:

[   90.005011]        CPU0
[   90.005512]        ----
[   90.006013]   lock(&ictx->ioas_creation_lock);
[   90.006514]   lock(&ictx->ioas_creation_lock);
[   90.007015]
                *** DEADLOCK ***

[   90.007516]  May be due to missing lock nesting notation

[   90.008017] stack backtrace:
[   90.008518] Call Trace:
[   90.009019]  <TASK>
[   90.009520]  dump_stack_lvl+0x75/0x80
[   90.010021]  </TASK>
"""

ODEBUG = """\
[   95.300001] ------------[ cut here ]------------
[   95.300502] ODEBUG: free active (active state 0) object: ffff888005c3a1e8 object type: work_struct \
hint: vfio_pci_core_runtime_work+0x0/0x40
[   95.301003] WARNING: CPU: 0 PID: 420 at lib/debugobjects.c:514 debug_print_object+0x1a7/0x2b0
[   95.301504] Modules linked in:
[   95.302005] CPU: 0 UID: 0 PID: 420 Comm: python3 Not tainted 6.12.118 #1
[   95.302506] RIP: 0010:debug_print_object+0x1a7/0x2b0
[   95.303007] Call Trace:
[   95.303508]  <TASK>
[   95.304009]  debug_check_no_obj_freed+0x1f5/0x2c0
[   95.304510]  kfree+0x1e0/0x3b0
[   95.305011]  vfio_pci_core_release_dev+0x5e/0x90
[   95.305512]  </TASK>
[   95.306013] ---[ end trace 0000000000000000 ]---
"""

SLEEP_IN_ATOMIC = """\
[   99.000001] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:585
[   99.000502] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 431, name: python3
[   99.001003] preempt_count: 1, expected: 0
[   99.001504] RCU nest depth: 0, expected: 0
[   99.002005] 1 lock held by python3/431:
[   99.002506]  #0: ffff888004d1e020 (&vdev->igate){+.+.}-{3:3}, at: vfio_pci_set_irqs_ioctl+0x44/0x90
[   99.003007] CPU: 0 UID: 0 PID: 431 Comm: python3 Not tainted 6.12.118 #1
[   99.003508] Call Trace:
[   99.004009]  <TASK>
[   99.004510]  __might_resched+0x1a3/0x260
[   99.005011]  </TASK>
[   99.005512] vfioconf: case done
"""


def test_a_sanitizer_kernels_boot_messages_are_no_splats() -> None:
    assert console.scan(BOOT_NOISE) == []


def test_kasan_report_is_one_splat_to_its_closing_rule() -> None:
    (s,) = console.scan(BOOT_NOISE + KASAN_UAF)
    assert s.kind == "KASAN"
    assert s.title == "BUG: KASAN: slab-use-after-free in iopt_area_unfill_domain+0x4a/0x2c0"
    assert "Freed by task 318:" in s.excerpt and "kmalloc-128" in s.excerpt
    assert "Disabling lock debugging" not in s.excerpt
    assert (BOOT_NOISE + KASAN_UAF).encode()[s.offset:].startswith(b"[   61.205290] BUG: KASAN:")


def test_ubsan_report_of_6_12_ends_with_its_end_trace_line() -> None:
    (s,) = console.scan(UBSAN_SHIFT + BOOT_NOISE)
    assert s.kind == "UBSAN"
    assert s.title == "UBSAN: shift-out-of-bounds in drivers/iommu/iommufd/io_pagetable.c:612:23"
    assert s.excerpt.splitlines()[-1].endswith("---[ end trace ]---")
    assert "shift exponent 64" in s.excerpt and "vfioconf" not in s.excerpt


def test_circular_and_recursive_locking_are_lockdep_splats_ending_with_their_stack() -> None:
    circular, recursive = console.scan(CIRCULAR + RECURSIVE)
    assert (circular.kind, circular.title) == ("lockdep", "WARNING: possible circular locking dependency detected")
    assert "*** DEADLOCK ***" in circular.excerpt and "print_circular_bug" in circular.excerpt
    assert circular.excerpt.splitlines()[-1].endswith("</TASK>")
    assert (recursive.kind, recursive.title) == ("lockdep", "WARNING: possible recursive locking detected")
    assert "missing lock nesting notation" in recursive.excerpt


def test_odebug_report_absorbs_its_warning_and_keeps_the_object_in_the_title() -> None:
    (s,) = console.scan(ODEBUG)
    assert s.kind == "ODEBUG"
    assert s.title.startswith("ODEBUG: free active (active state 0) object: ffff888005c3a1e8 object type: work_struct")
    assert "WARNING: CPU: 0 PID: 420 at lib/debugobjects.c:514" in s.excerpt
    assert "vfio_pci_core_release_dev" in s.excerpt
    assert s.excerpt.splitlines()[-1].endswith("---[ end trace 0000000000000000 ]---")


def test_a_plain_warning_after_an_odebug_report_is_its_own_splat() -> None:
    warn = ODEBUG.replace("ODEBUG: free active", "ODEBUG: init active").split("\n", 2)[2]   # no ODEBUG line
    kinds = [s.kind for s in console.scan(ODEBUG + warn)]
    assert kinds == ["ODEBUG", "WARNING"]


def test_sleeping_in_atomic_context_ends_with_its_stack() -> None:
    (s,) = console.scan(SLEEP_IN_ATOMIC)
    assert s.kind == "atomic sleep"
    assert "vfio_pci_set_irqs_ioctl" in s.excerpt and "vfioconf: case done" not in s.excerpt


def test_classify_the_other_lockdep_and_odebug_reports() -> None:
    c = console.classify
    assert c("[   5.1] [ BUG: Invalid wait context ]") == "lockdep"
    assert c("[   5.1] INFO: trying to register non-static key.") == "lockdep"
    assert c("[   5.1] WARNING: python3/431 still has locks held!") == "lockdep"
    assert c("[   5.1] WARNING: inconsistent lock state") == "lockdep"
    assert c("[   5.1] ODEBUG: object ffffc90000a3fd48 is on stack ffffc90000a38000, but NOT annotated.") == "ODEBUG"
    assert c("[   5.1] ODEBUG: Out of memory. ODEBUG disabled") is None
    assert c("[   5.1] BUG: scheduling while atomic: python3/431/0x00000002") == "atomic sleep"
    assert c("[   5.1] BUG: unable to handle page fault for address: ffffc90000a40000") == "BUG"
