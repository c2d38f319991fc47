/* cgsentry sensor programs — BCC dialect (BPF C compiled by BCC at start, not by kbuild).
 *
 * Portability rule: read only tracepoint arguments and BPF helpers, never kernel structs, so the
 * programs compile against approximate headers on any kernel >= 5.8 (ring buffer) and need no BTF.
 * Options come as -DNAME=value cflags (see sensor/bpf_loader.py, `cgsentry-sensor trace --dump-bpf`).
 *
 * What leaves the kernel: process execs/forks/exits and network connects/accepts/listens of every
 * process (host too); first-seen (cgroup, syscall) pairs of profiled cgroups; opens of sensitive
 * path prefixes and sensitive syscalls of non-host cgroups. Everything else stays in maps.
 */
#include <uapi/linux/ptrace.h>
#include "cgsentry.h"

#ifndef RING_PAGES
#define RING_PAGES 256
#endif
#ifndef SYSCALL_PROFILE
#define SYSCALL_PROFILE 1
#endif
#ifndef SENSITIVE
#define SENSITIVE 1
#endif
#ifndef MAX_SOCKETS
#define MAX_SOCKETS 65536
#endif
#ifndef NET_DEDUP
#define NET_DEDUP 1
#endif
#ifndef WAKE_BATCH
#define WAKE_BATCH 64
#endif
#ifndef TASK_STORAGE
#define TASK_STORAGE 0
#endif
#ifndef FORK_RECORDS
#define FORK_RECORDS 0
#endif

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
/* BCC 0.26 has no events.ringbuf_query(); its rewriter names each map by a placeholder fd,
 * numbered -1, -2, ... in declaration order, so `events` must stay the first map declared.
 * Pointing at any other map would not go unnoticed: the verifier refuses the helper on a map
 * that is not a ring buffer, and the sensor fails to load. */
#define RING_QUERY(flag) bpf_ringbuf_query((void *)bpf_pseudo_fd(1, -1), (flag))
BPF_PERCPU_ARRAY(drops, u64, 2 * OP_MAX);      /* failed ringbuf_reserve: [op] ring full, [OP_MAX + op] room left */
BPF_HASH(cgroups, u64, struct watch, 16384);   /* cgroup id -> flags, written by userspace */
BPF_HASH(banned, struct ban_key, u32, 1024);   /* (cgroup id, comm) -> kill at exec */
BPF_HASH(syscall_counts, struct sc_key, u64, 65536);  /* (cgroup, nr) -> count */
BPF_LPM_TRIE(prefixes, struct prefix_key, u32, PREFIX_MAX);  /* path prefix -> mode mask */
/* argv captured at execve entry, until sched_process_exec copies it into the exec record. Its own
 * type, not an exec_rec: the map update copies the whole value, and the filename and header
 * (336 bytes) are filled at exec anyway. */
struct argv_buf {
    u32 argc;
    u32 flags;            /* F_ARGS_TRUNC, F_ARGS_FAULT */
    u32 len;              /* bytes of args used */
    u32 _pad;
    u32 off1;             /* where argv[1] starts in args (len if none): argv[0] ends before it */
    u32 off2;             /* where argv[2] starts (len if none) */
    char args[ARGS_SIZE];
};
/* Per-CPU scratch: an exec record or an argv buffer, and room behind it for one whole string
 * read: each argv entry is read with a constant bound of ARGS_SIZE at a masked offset, which
 * the verifier can prove inside the value; what spills past ARGS_SIZE is never sent. */
struct exec_scratch {
    struct exec_rec r;
    char spill[ARGS_SIZE];
};
/* tid -> argv captured at execve entry. An LRU: a failed execve leaves its entry behind (no exit
 * hook joins it), and an LRU ages such entries out instead of filling up. 1024 execs in flight
 * at once is far beyond what a host does; each entry is ARGS_SIZE + 16 bytes, preallocated. */
BPF_TABLE("lru_hash", u32, struct argv_buf, exec_args, 1024);
BPF_PERCPU_ARRAY(scratch, struct exec_scratch, 1);
BPF_HASH(exit_codes, u32, s32, 16384);             /* tgid -> exit_group() status */
BPF_TABLE("lru_hash", u64, u16, sock_types, MAX_SOCKETS);   /* (tgid << 32 | fd) -> 17 or PROTO_OTHER; absent: TCP */
BPF_TABLE("lru_hash", u64, struct net_rec, bound, MAX_SOCKETS); /* (tgid << 32 | fd) -> bind address */
BPF_TABLE("lru_hash", struct net_key, u64, net_counts, 65536);  /* first-seen filter + counters */
BPF_HASH(pending_open, u32, struct open_rec, 4096);
BPF_HASH(pending_sys, u32, struct sys_rec, 4096);
BPF_TABLE("lru_hash", u32, struct lineage, lineage, 65536);  /* pid -> parent, exec'd? */
BPF_TABLE("lru_hash", struct count_key, u64, proc_counts, 16384);       /* (cgroup, fork|exit) -> count */
BPF_PERCPU_ARRAY(unwoken, u32, 1);                 /* records submitted since this CPU last woke the reader */

/* A reserve can fail with the ring nowhere near full: when the consumer position the kernel
 * reads is wrong (a torn write by the reader, found exactly this way: see sensor/ringbuf.py), or,
 * on kernels whose ring lock is an rqspinlock, when the lock gives up. Those failures are counted
 * apart from "ring full", so a drop report says which fix applies: a bigger ring, or a bug.
 * "Room left" means less than half the ring was unread just after the failure: the reader frees
 * at most 256 records at a time, which on the default 1 MiB ring cannot take a full ring below
 * half (on rings of a few pages the split is only indicative). */
static __always_inline void count_drop(u32 op)
{
    if (RING_QUERY(BPF_RB_AVAIL_DATA) < (u64)RING_PAGES * PAGE_SIZE / 2)
        op += OP_MAX;
    u64 *n = drops.lookup(&op);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* Wakeups, not records, are what a ring buffer costs the traced workload: every default submit
 * queues an irq_work that wakes the reader, and an exec storm measured +25-30 % from that alone
 * (bench/overhead.py). So records are submitted without a wakeup and the reader drains the ring
 * every poll interval (ProbeOptions.poll_ms); a CPU forces a wakeup only after WAKE_BATCH
 * unannounced records, so a storm cannot fill the ring between polls, and for records that must
 * not wait (a process killed at exec, anything from an enforce-mode cgroup: see wake_for).
 * WAKE_BATCH=1 restores a wakeup per record. */
static __always_inline u64 wake_flags(int urgent)
{
    u32 zero = 0;
    u32 *n = unwoken.lookup(&zero);
    if (WAKE_BATCH <= 1 || !n)
        return 0;  /* the kernel's default: wake when the reader has caught up */
    if (!urgent && ++*n < WAKE_BATCH)
        return BPF_RB_NO_WAKEUP;
    *n = 0;
    return BPF_RB_FORCE_WAKEUP;
}

/* Per-thread state between a syscall's entry and exit (socket, connect, accept, bind). With BTF
 * (-DTASK_STORAGE=1, 5.11+) it lives in task-local storage: one pointer hop from the current task
 * instead of a hash insert at entry and a lookup + delete at exit, which bench/overhead.py
 * measured at ~300 ns each on a connect storm. The task pointer is only a handle for the helper,
 * never dereferenced. Without BTF an LRU hash keyed by thread id stands in (no deletes needed:
 * `op` marks what is in flight and stale entries age out). */
struct task_ctx {
    u64 sock_arg;          /* socket(): family << 32 | type */
    u64 peer_ptr;          /* accept(): user sockaddr buffer */
    u32 op;                /* syscall in flight: 0, OP_CONNECT, OP_ACCEPT, OP_LISTEN (bind) */
    u32 sock_pending;
    struct net_rec net;
};
#if TASK_STORAGE
BPF_TASK_STORAGE(task_state, struct task_ctx);
static __always_inline struct task_ctx *task_ctx(int create)
{
    return task_state.task_storage_get(bpf_get_current_task_btf(), 0,
                                       create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}
#else
BPF_TABLE("lru_hash", u32, struct task_ctx, task_state, 16384);
static __always_inline struct task_ctx *task_ctx(int create)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct task_ctx *c = task_state.lookup(&tid);
    if (c || !create)
        return c;
    struct task_ctx zero = {};
    task_state.update(&tid, &zero);
    return task_state.lookup(&tid);
}
#endif

/* The header, with the parent from the caller's own lineage entry `l` (NULL: not forked under us). */
static __always_inline void fill_hdr_lineage(struct hdr *h, u32 op, struct lineage *l)
{
    u64 id = bpf_get_current_pid_tgid();
    u64 ug = bpf_get_current_uid_gid();
    h->op = op;
    h->pid = id >> 32;
    h->tid = (u32)id;
    h->uid = (u32)ug;
    h->gid = ug >> 32;
    h->flags = 0;
    h->ktime_ns = bpf_ktime_get_ns();
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->ppid = l ? l->ppid : 0;
    h->anc = l ? l->anc : 0;
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

/* The header; returns the process's lineage entry it read, for callers that update it. */
static __always_inline struct lineage *fill_hdr(struct hdr *h, u32 op)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct lineage *l = lineage.lookup(&tgid);
    fill_hdr_lineage(h, op, l);
    return l;
}

static __always_inline void count_proc(u32 op)
{
    struct count_key k = {.cgroup_id = bpf_get_current_cgroup_id(), .op = op};
    u64 *n = proc_counts.lookup(&k);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return;
    }
    u64 one = 1;
    if (proc_counts.insert(&k, &one) != 0 && (n = proc_counts.lookup(&k)))
        __sync_fetch_and_add(n, 1);  /* another CPU inserted it first */
}

static __always_inline u32 cgroup_flags(u64 cg)
{
    struct watch *w = cgroups.lookup(&cg);
    return w ? w->flags : 0;
}

/* Records of cgroups whose image is in enforce mode (CG_URGENT, set by userspace) wake the reader
 * at once: there a response races the process, and latency is worth a wakeup per record. */
static __always_inline u64 wake_for(struct hdr *h, int urgent)
{
    return wake_flags(urgent || (cgroup_flags(h->cgroup_id) & CG_URGENT));
}

/* ---------------------------------------------------------------- process lifecycle ---------- */

/* syscalls:sys_enter_execve(at) (since 4.7): the only place argv is readable without walking the
 * new mm. Captured per tid and joined at sched_process_exec; a failed exec leaves an entry that
 * the next exec of that tid overwrites or the LRU ages out.
 *
 * Up to ARGS_MAX entries and ARGS_SIZE bytes (NULs included) are kept whole; beyond that the rest
 * is cut and F_ARGS_TRUNC says so. A string whose page is not in memory yet (argv built in
 * freshly mapped memory, or swapped out) cannot be read here: BPF may not fault pages in. The
 * entry is then left empty and F_ARGS_FAULT asks userspace to read /proc/PID/cmdline instead
 * (sensor/procfacts.py), which by then holds the new image's argv. */
static __always_inline int capture_argv(const char *const *argv)
{
    u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
    struct argv_buf *b = (struct argv_buf *)scratch.lookup(&zero);  /* an exec_scratch is bigger */
    if (!b)
        return 0;
    /* The running offset, count and flags live in the map value, not in registers: the verifier
     * does not track values through map memory, so the paths of one iteration (read, fault, cut)
     * end in equal states and are pruned; tracked in registers, each path's offset range would
     * differ and 64 iterations would multiply them past the verifier's limit. */
    b->argc = 0;
    b->flags = 0;
    b->len = 0;
    b->_pad = 0;
    b->off1 = 0;
    b->off2 = 0;
    for (int i = 0; i < ARGS_MAX; i++) {
        const char *p = NULL;
        if (bpf_probe_read_user(&p, sizeof(p), &argv[i])) {
            b->flags |= F_ARGS_FAULT;  /* argv itself not readable: userspace reads it all */
            break;
        }
        if (!p)
            break;
        u32 off = b->len;
        if (off >= ARGS_SIZE) {
            b->flags |= F_ARGS_TRUNC;
            break;
        }
        if (i == 1)
            b->off1 = off;
        else if (i == 2)
            b->off2 = off;
        char *dst = b->args + (off & (ARGS_SIZE - 1));
        long n = bpf_probe_read_user_str(dst, ARGS_SIZE, p);
        if (n <= 0) {
            dst[0] = 0;  /* not faulted in: an empty entry in its place */
            n = 1;
            b->flags |= F_ARGS_FAULT;
        } else if (n == ARGS_SIZE) {
            /* the read was cut at ARGS_SIZE - 1 bytes unless that is exactly the entry's length;
             * only the user's byte there tells them apart */
            char last = 0;
            bpf_probe_read_user(&last, 1, p + ARGS_SIZE - 1);
            if (last)
                b->flags |= F_ARGS_TRUNC;
        }
        b->argc = i + 1;
        if (off + n > ARGS_SIZE) {
            b->len = ARGS_SIZE;  /* the entry ran past the end: its head is kept, without a NUL */
            b->flags |= F_ARGS_TRUNC;
            break;
        }
        b->len = off + n;
        if (i == ARGS_MAX - 1) {
            const char *next = NULL;
            bpf_probe_read_user(&next, sizeof(next), &argv[i + 1]);
            if (next)
                b->flags |= F_ARGS_TRUNC;
        }
    }
    if (!b->off1)
        b->off1 = b->len;
    if (!b->off2)
        b->off2 = b->len;
    exec_args.update(&tid, b);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve) { return capture_argv(args->argv); }
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) { return capture_argv(args->argv); }

/* An offset into args, masked where the compiler cannot drop the mask: it may prove the offset in
 * range and drop it, where the verifier (seeing a subtraction that could wrap) cannot. */
#define ARGS_IDX(x) ({ u32 __i = (x); asm volatile("" : "+r"(__i)); __i & (ARGS_SIZE - 1); })

static __always_inline int is_multicall(const char *p, u32 n)
{
    if (n == 7)
        return p[0] == 'b' && p[1] == 'u' && p[2] == 's' && p[3] == 'y' && p[4] == 'b' && p[5] == 'o' && p[6] == 'x';
    if (n == 6)
        return p[0] == 't' && p[1] == 'o' && p[2] == 'y' && p[3] == 'b' && p[4] == 'o' && p[5] == 'x';
    return 0;
}

/* The base name of the argv entry in args[start, end) (its NUL at end - 1): the bytes after its
 * last '/', searched back at most 16 bytes from its end, since a comm key holds 15. Returns its
 * offset and sets *n to its length; n is 0 when there is none that fits. */
static __always_inline u32 entry_base(const char *args, u32 start, u32 end, u32 *n)
{
    *n = 0;
    if (end <= start + 1 || end > ARGS_SIZE)
        return 0;
    u32 stop = end - 1, base = start;
    for (u32 k = 1; k <= 16; k++) {
        if (stop < start + k)
            break;  /* reached the entry's start: no '/' */
        if (args[ARGS_IDX(stop - k)] == '/') {
            base = stop - k + 1;
            break;
        }
        if (k == 16)
            return 0;  /* longer than a comm */
    }
    *n = stop - base;
    return base;
}

/* The program a multi-call binary runs for this argv, as a comm key: argv[0]'s base name (a login
 * shell's "-" dropped), argv[1]'s when argv[0] is busybox or toybox. busybox picks its applet so,
 * whatever file name it was started by (`busybox nc`, `exec -a nc /bin/ls` with ls a hard link to
 * busybox), and a file's name (comm) alone would let a banned applet run under another name. The
 * kernel cannot tell here whether the file is a multi-call binary (that needs its inode), so for
 * any program an argv[0] naming a banned one is banned too. capture_argv notes where argv[1] and
 * argv[2] start, so no loop here walks the whole argv. Returns 1 when out holds a name. */
static __always_inline int argv_name(const char *args, u32 off1, u32 off2, char *out)
{
    u32 n = 0;
    u32 base = entry_base(args, 0, off1, &n);
    if (!n)
        return 0;
    if (is_multicall(args + ARGS_IDX(base), n)) {
        base = entry_base(args, off1, off2, &n);  /* busybox nc ...: the applet is argv[1] */
        if (!n || args[ARGS_IDX(base)] == '-')
            return 0;  /* busybox --list and the like: no applet */
    } else if (args[ARGS_IDX(base)] == '-') {
        base++;  /* a login shell */
        n--;
    }
    for (u32 j = 0; j < 15; j++) {
        if (j >= n)
            break;
        out[j] = args[ARGS_IDX(base + j)];
    }
    return n > 0;
}

/* sched:sched_process_exec (since 3.4): fires once the new image is committed, with the final
 * filename and the new comm already set — so a banned comm can be killed here with
 * bpf_send_signal (5.3+) before it runs a single user instruction. Misses nothing that execs;
 * processes that fork() without exec() appear only as fork records. */
TRACEPOINT_PROBE(sched, sched_process_exec)
{
    /* Built in scratch and sent with ringbuf_output, only as long as its argv: a reserve must
     * be of constant size, and ARGS_SIZE bytes for every `true` would fill the ring 10x faster. */
    u32 zero = 0;
    struct exec_rec *r = (struct exec_rec *)scratch.lookup(&zero);
    if (!r)
        return 0;
    struct lineage *l = fill_hdr(&r->h, OP_EXEC);
    if (l)
        l->flags |= LN_EXECED;
    r->old_pid = args->old_pid;
    r->argc = 0;
    r->args_len = 0;
    r->_pad = 0;
    TP_DATA_LOC_READ_STR(r->filename, filename, sizeof(r->filename));
    /* argv stays in a hash keyed by the exec'ing thread (old_pid), not in task storage: every
     * exec'ing child is a fresh task, and creating its storage (~5.8 us) cost more than the
     * preallocated hash insert (~3.7 us, bench/overhead.py with kernel.bpf_stats_enabled). */
    u32 key = args->old_pid;
    u32 off1 = 0, off2 = 0;  /* where argv[1] and argv[2] start in r->args */
    struct argv_buf *a = exec_args.lookup(&key);
    if (a) {
        u32 len = a->len;
        if (len > ARGS_SIZE)
            len = ARGS_SIZE;
        r->argc = a->argc;
        r->args_len = len;
        r->h.flags |= a->flags & (F_ARGS_TRUNC | F_ARGS_FAULT);
        /* only the bytes captured: the decoder reads args[0..args_len) and no further; the mask
         * keeps the bound provable (the scratch has ARGS_SIZE spare bytes behind args) */
        bpf_probe_read_kernel(r->args, len & (2 * ARGS_SIZE - 1), a->args);
        off1 = a->off1 < len ? a->off1 : len;
        off2 = a->off2 < len ? a->off2 : len;
        exec_args.delete(&key);
    }
    u32 cg_flags = cgroup_flags(r->h.cgroup_id);
    if (!(cg_flags & CG_HOST)) {
        struct ban_key bk = {.cgroup_id = r->h.cgroup_id};
        __builtin_memcpy(bk.comm, r->h.comm, sizeof(bk.comm));
        u32 *ban = banned.lookup(&bk);
        if (!ban) {
            bk.cgroup_id = 0;
            ban = banned.lookup(&bk);
        }
        if (!ban && r->args_len) {  /* the name argv gives: a multi-call binary's applet */
            struct ban_key nk = {.cgroup_id = r->h.cgroup_id};
            if (argv_name(r->args, off1, off2, nk.comm)) {
                ban = banned.lookup(&nk);
                if (!ban) {
                    nk.cgroup_id = 0;
                    ban = banned.lookup(&nk);
                }
            }
        }
        if (ban) {
            bpf_send_signal(9);
            r->h.flags |= F_KILLED;
        }
    }
    u32 size = (sizeof(*r) - ARGS_SIZE + r->args_len) & (2 * ARGS_SIZE - 1);
    if (events.ringbuf_output(r, size, wake_flags((r->h.flags & F_KILLED) || (cg_flags & CG_URGENT))))
        count_drop(OP_EXEC);
    return 0;
}

/* sched:sched_process_fork (since 2.6.32): parent/child pids, the only portable way to learn a
 * ppid without reading task_struct. DESIGN principle 1: a fork is not an event anyone triages, so
 * it stays in the kernel — the child's parent goes into `lineage` (every later record of the child
 * carries it in hdr.ppid, and userspace adopts the child from it), and the fork is counted per
 * cgroup for the rate model. A server that forks per request thus sends nothing per request.
 * Fires for threads too (clone(CLONE_THREAD)): their entries are never looked up and age out of
 * the LRU. -DFORK_RECORDS=1 (`trace --forks`) also sends each fork up. */
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    u32 parent = bpf_get_current_pid_tgid() >> 32;
    struct lineage l = {.ppid = parent, .anc = parent};
    struct lineage *pl = lineage.lookup(&parent);
    if (pl && !(pl->flags & LN_EXECED))
        l.anc = pl->anc;  /* a fork-only parent was never reported: point past it */
    u32 child = args->child_pid;
    lineage.update(&child, &l);
    count_proc(OP_FORK);
#if FORK_RECORDS
    struct fork_rec *r = events.ringbuf_reserve(sizeof(struct fork_rec));
    if (!r) {
        count_drop(OP_FORK);
        return 0;
    }
    fill_hdr(&r->h, OP_FORK);
    r->parent_pid = args->parent_pid;
    r->child_pid = args->child_pid;
    events.ringbuf_submit(r, wake_for(&r->h, 0));
#endif
    return 0;
}

/* syscalls:sys_enter_exit_group: the exit status, which sched_process_exit does not carry. */
TRACEPOINT_PROBE(syscalls, sys_enter_exit_group)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct lineage *l = lineage.lookup(&tgid);
    if (l) {
        if (!(l->flags & LN_EXECED) && !FORK_RECORDS)
            return 0;  /* its exit is counted, not reported: no status needed */
        l->exit_code = args->error_code;  /* no hash insert for processes forked under us */
        l->flags |= LN_CODE;
        return 0;
    }
    s32 code = args->error_code;
    exit_codes.update(&tgid, &code);
    return 0;
}

/* sched:sched_process_exit: per thread; `group_dead` (5.x+) marks the last thread of a process,
 * the only one counted. Reported only for a process userspace knows: one that exec'd, or one that
 * existed before the sensor (no lineage entry); a fork-only child's exit is just counted. Exit by
 * signal has no exit_group() and reports -1 with F_EXIT_SIGNAL. */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    if (!args->group_dead)
        return 0;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    count_proc(OP_EXIT);
    struct lineage *l = lineage.lookup(&tgid);
    if (l && !(l->flags & LN_EXECED) && !FORK_RECORDS) {
        lineage.delete(&tgid);
        return 0;
    }
    struct exit_rec *r = events.ringbuf_reserve(sizeof(struct exit_rec));
    if (!r) {
        count_drop(OP_EXIT);
        exit_codes.delete(&tgid);
        lineage.delete(&tgid);
        return 0;
    }
    fill_hdr_lineage(&r->h, OP_EXIT, l);
    s32 *code = NULL;
    if (l && (l->flags & LN_CODE)) {
        r->exit_code = l->exit_code;
    } else if ((code = exit_codes.lookup(&tgid))) {
        r->exit_code = *code;
        exit_codes.delete(&tgid);
    } else {
        r->exit_code = -1;
        r->h.flags |= F_EXIT_SIGNAL;
    }
    if (l)
        lineage.delete(&tgid);
    r->_pad = 0;
    events.ringbuf_submit(r, wake_for(&r->h, 0));
    return 0;
}

/* ---------------------------------------------------------------- network -------------------- */

/* socket(2) entry/exit: remember each socket's protocol, since connect/bind/accept arguments do
 * not say TCP or UDP. Only non-TCP sockets are stored; a socket not in the map is TCP. UDP
 * sockets that existed before the sensor started are seeded from /proc by userspace
 * (sensor/sockseed.py), so a long-lived resolver socket is not mistaken for TCP. */
#define PROTO_OTHER 255
TRACEPOINT_PROBE(syscalls, sys_enter_socket)
{
    if (args->family != 2 && args->family != 10)
        return 0;
    struct task_ctx *c = task_ctx(1);
    if (!c)
        return 0;
    c->sock_arg = ((u64)args->family << 32) | (u32)args->type;
    c->sock_pending = 1;
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_socket)
{
    u64 id = bpf_get_current_pid_tgid();
    struct task_ctx *c = task_ctx(0);
    if (!c || !c->sock_pending)
        return 0;
    u64 val = c->sock_arg;
    c->sock_pending = 0;
    if (args->ret < 0)
        return 0;
    u32 type = (u32)val & 0xf;  /* strip SOCK_NONBLOCK/SOCK_CLOEXEC */
    u64 key = (id & 0xffffffff00000000ULL) | (u32)args->ret;
    if (type == 1) {
        /* TCP is what an absent key means: a delete that misses is far cheaper than an LRU
         * insert (~300 ns), and it clears a stale entry of a closed socket whose fd is reused. */
        if (sock_types.lookup(&key))
            sock_types.delete(&key);
        return 0;
    }
    u16 proto = type == 2 ? 17 : PROTO_OTHER;
    sock_types.update(&key, &proto);
    return 0;
}

static __always_inline u64 sock_key(u32 fd)
{
    return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | fd;
}

/* Parse a user sockaddr into (family, port, addr); returns 0 for families we do not report. */
static __always_inline int read_sockaddr(const void *uaddr, u16 *family, u16 *port, u8 *addr,
                                         char *unix_path)
{
    /* One user read covers family, port and an IPv4 address (each user read costs ~100 ns). */
    struct { u16 family; u16 port; u8 v4[4]; u8 v6_head[8]; } sa = {};
    if (!uaddr || bpf_probe_read_user(&sa, sizeof(sa), uaddr))
        return 0;
    *family = sa.family;
    if (sa.family == 2) {
        *port = ntohs(sa.port);
        __builtin_memcpy(addr, sa.v4, 4);
        return 1;
    }
    if (sa.family == 10) {
        *port = ntohs(sa.port);
        bpf_probe_read_user(addr, 16, (char *)uaddr + 8);
        return 1;
    }
    if (sa.family == 1 && unix_path) {
        bpf_probe_read_user_str(unix_path, UNIX_PATH_LEN, (char *)uaddr + 2);
        return 1;
    }
    return 0;
}

static __always_inline u16 sock_proto(u32 fd)
{
    u64 key = sock_key(fd);
    u16 *proto = sock_types.lookup(&key);
    if (!proto)
        return 6;
    return *proto == PROTO_OTHER ? 0 : *proto;
}

/* connect(2) entry (syscalls tracepoints since 4.7): destination from the user sockaddr; the
 * result comes at exit. -EINPROGRESS (non-blocking) is an attempt and is reported as such. */
TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    struct task_ctx *c = task_ctx(1);
    if (!c)
        return 0;
    c->op = 0;
    __builtin_memset(&c->net, 0, sizeof(c->net));
    if (!read_sockaddr(args->uservaddr, &c->net.family, &c->net.dport, c->net.daddr, c->net.unix_path))
        return 0;
    c->net.fd = args->fd;
    c->op = OP_CONNECT;
    return 0;
}

/* DESIGN principle 1 for the network: a connect storm to one endpoint is one record plus a
 * counter, not one record per connect. Returns 1 if this (cgroup, comm, endpoint, outcome) was
 * seen before (counted, not emitted). Unix sockets are always emitted (rare, and the path
 * matters to the rules). */
static __always_inline int net_seen(u32 op, struct net_rec *r, s64 ret)
{
#if NET_DEDUP
    if (r->family == 1)
        return 0;
    struct net_key k = {};
    k.cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&k.comm, sizeof(k.comm));
    bpf_probe_read_kernel(k.addr, sizeof(k.addr), r->daddr);
    k.op = op;
    k.port = op == OP_ACCEPT ? r->sport : r->dport;
    k.proto = sock_proto(r->fd);
    k.ok = ret >= 0 || ret == -115;
    u64 *n = net_counts.lookup(&k);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return 1;
    }
    u64 one = 1;
    return net_counts.insert(&k, &one) != 0;  /* lost an insert race: the winner reports it */
#else
    return 0;
#endif
}

static __always_inline int emit_net(u32 op, struct net_rec *pending, s64 ret)
{
    if (op != OP_LISTEN && net_seen(op, pending, ret))
        return 0;
    struct net_rec *r = events.ringbuf_reserve(sizeof(struct net_rec));
    if (!r) {
        count_drop(op);
        return 0;
    }
    bpf_probe_read_kernel(r, sizeof(*r), pending);
    fill_hdr(&r->h, op);
    r->ret = ret;
    r->proto = sock_proto(r->fd);
    events.ringbuf_submit(r, wake_for(&r->h, 0));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    struct task_ctx *c = task_ctx(0);
    if (!c || c->op != OP_CONNECT)
        return 0;
    c->op = 0;
    return emit_net(OP_CONNECT, &c->net, args->ret);
}

/* accept/accept4: the peer address is written to the user buffer by the kernel, so it is read at
 * exit; the local port comes from the listener's bind record. Accepts with a NULL peer buffer
 * (common in servers that call getpeername later) report the local side only. */
static __always_inline int accept_enter(u32 fd, const void *upeer)
{
    struct task_ctx *c = task_ctx(1);
    if (!c)
        return 0;
    __builtin_memset(&c->net, 0, sizeof(c->net));
    c->net.fd = fd;
    c->peer_ptr = (u64)upeer;
    c->op = OP_ACCEPT;
    return 0;
}

static __always_inline int accept_exit(s64 ret)
{
    struct task_ctx *c = task_ctx(0);
    if (!c || c->op != OP_ACCEPT)
        return 0;
    c->op = 0;
    if (ret < 0)
        return 0;
    struct net_rec *r = &c->net;
    read_sockaddr((void *)c->peer_ptr, &r->family, &r->dport, r->daddr, NULL);
    u64 key = sock_key(r->fd);
    struct net_rec *b = bound.lookup(&key);
    if (b) {
        r->sport = b->sport;
        if (!r->family)
            r->family = b->family;
        bpf_probe_read_kernel(r->saddr, sizeof(r->saddr), b->saddr);
    }
    return emit_net(OP_ACCEPT, r, ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return accept_enter(args->fd, args->upeer_sockaddr); }
TRACEPOINT_PROBE(syscalls, sys_enter_accept4) { return accept_enter(args->fd, args->upeer_sockaddr); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return accept_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return accept_exit(args->ret); }

/* bind(2): remembered per (tgid, fd) so listen() and accept() can report the local port. A UDP
 * bind is the UDP equivalent of listening and is reported as a listen record at once. */
TRACEPOINT_PROBE(syscalls, sys_enter_bind)
{
    struct task_ctx *c = task_ctx(1);
    if (!c)
        return 0;
    c->op = 0;
    __builtin_memset(&c->net, 0, sizeof(c->net));
    if (!read_sockaddr(args->umyaddr, &c->net.family, &c->net.sport, c->net.saddr, NULL) || c->net.family == 1)
        return 0;
    c->net.fd = args->fd;
    c->op = OP_LISTEN;  /* a bind in flight */
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_bind)
{
    struct task_ctx *c = task_ctx(0);
    if (!c || c->op != OP_LISTEN)
        return 0;
    c->op = 0;
    if (args->ret == 0) {
        u64 key = sock_key(c->net.fd);
        bound.update(&key, &c->net);
        if (sock_proto(c->net.fd) == 17)
            emit_net(OP_LISTEN, &c->net, 0);
    }
    return 0;
}

/* listen(2): a TCP listener; the port is the one bound earlier (0 if the socket was bound before
 * the sensor started or auto-bound by listen itself). */
TRACEPOINT_PROBE(syscalls, sys_enter_listen)
{
    u64 key = sock_key(args->fd);
    struct net_rec *b = bound.lookup(&key);
    struct net_rec r = {};
    if (b)
        bpf_probe_read_kernel(&r, sizeof(r), b);
    r.fd = args->fd;
    return emit_net(OP_LISTEN, &r, 0);
}

/* ---------------------------------------------------------------- syscall profile ------------ */
#if SYSCALL_PROFILE
/* raw_syscalls:sys_enter as a *raw* tracepoint (4.17+): no argument marshalling, the cheapest
 * hook that sees every syscall of every task. It is attached by userspace only while at least one
 * cgroup is being profiled (learning images), so a sensor whose images all finished learning pays
 * nothing here. The first thing is the per-cgroup flag lookup; counts stay in the map and are read
 * in batches; only a first-seen (cgroup, nr) pair goes up the ring buffer. */
BPF_ARRAY(profile_slots, u32, PROFILE_SLOTS);  /* profiled cgroups per (id & 4095), by userspace */

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u64 cg = bpf_get_current_cgroup_id();
    /* Every syscall on the machine comes here while anything learns: an inlined array load
     * turns away the unprofiled majority before the hash lookup does. */
    u32 slot = cg & (PROFILE_SLOTS - 1);
    u32 *any = profile_slots.lookup(&slot);
    if (!any || !*any)
        return 0;
    struct watch *w = cgroups.lookup(&cg);
    if (!w || !(w->flags & CG_PROFILE))
        return 0;
    u64 nr = ctx->args[1];
    struct sc_key key = {.cgroup_id = cg, .nr = nr};
    u64 *n = syscall_counts.lookup(&key);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return 0;
    }
    u64 one = 1;
    if (syscall_counts.insert(&key, &one) != 0)
        return 0;  /* another CPU inserted it first (and reports it) or the map is full */
    struct syscall_rec *r = events.ringbuf_reserve(sizeof(struct syscall_rec));
    if (!r) {
        count_drop(OP_SYSCALL);
        return 0;
    }
    fill_hdr(&r->h, OP_SYSCALL);
    r->nr = (u32)nr;
    r->_pad = 0;
    events.ringbuf_submit(r, wake_for(&r->h, 0));
    return 0;
}
#endif

/* ---------------------------------------------------------------- sensitive events ----------- */
#if SENSITIVE
/* Sensitive-path match: one longest-prefix lookup in an LPM trie keyed by the path's first
 * PREFIX_LEN bytes, instead of comparing against each prefix in turn (which cost ~600 ns per
 * open with 24 prefixes). Userspace stores in each prefix's value the modes of every stored
 * prefix of it, so the longest match answers for all of them. */
static __always_inline int path_matches(const char *path, int n, u32 oflags)
{
    struct prefix_key key = {};
    int len = n - 1;  /* n counts the NUL */
    if (len <= 0)
        return 0;
    key.prefixlen = (len < PREFIX_LEN ? len : PREFIX_LEN) * 8;
    bpf_probe_read_kernel(key.s, PREFIX_LEN, path);
    u32 *mask = prefixes.lookup(&key);
    if (!mask)
        return 0;
    if (*mask & (1 << PM_ANY))
        return 1;
    if ((*mask & (1 << PM_WRITE)) && (oflags & (01 | 02 | 0100 | 01000)))  /* WRONLY RDWR CREAT TRUNC */
        return 1;
    if (*mask & (1 << PM_MEM)) {
        /* "/proc/<pid>/mem": the suffix starts at n - 5 */
        int k = (n - 5) & (PATH_LEN - 1);
        if (n >= 6 && path[k] == '/' && path[(k + 1) & (PATH_LEN - 1)] == 'm' &&
            path[(k + 2) & (PATH_LEN - 1)] == 'e' && path[(k + 3) & (PATH_LEN - 1)] == 'm')
            return 1;
    }
    return 0;
}

/* openat/openat2/open entry: only non-host cgroups, only paths under a watched prefix. The result
 * is joined at exit so rules can tell a denied read from a successful one. */
static __always_inline int open_enter(const char *filename, u32 oflags, u32 mode)
{
    u64 cg = bpf_get_current_cgroup_id();
    if (cgroup_flags(cg) & CG_HOST)
        return 0;
    u32 zero = 0, tid = (u32)bpf_get_current_pid_tgid();
    struct exec_scratch *s = scratch.lookup(&zero);  /* reuse: big enough for an open_rec */
    if (!s)
        return 0;
    struct open_rec *r = (struct open_rec *)s;
    int n = bpf_probe_read_user_str(r->path, PATH_LEN, filename);
    if (n <= 0 || !path_matches(r->path, n, oflags))
        return 0;
    r->flags = oflags;
    r->mode = mode;
    pending_open.update(&tid, r);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_openat) { return open_enter(args->filename, args->flags, args->mode); }
TRACEPOINT_PROBE(syscalls, sys_enter_open) { return open_enter(args->filename, args->flags, args->mode); }

static __always_inline int open_exit(s64 ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct open_rec *p = pending_open.lookup(&tid);
    if (!p)
        return 0;
    struct open_rec *r = events.ringbuf_reserve(sizeof(struct open_rec));
    if (!r) {
        count_drop(OP_OPEN);
    } else {
        bpf_probe_read_kernel(r, sizeof(*r), p);
        fill_hdr(&r->h, OP_OPEN);
        r->ret = ret;
        events.ringbuf_submit(r, wake_for(&r->h, 0));
    }
    pending_open.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_openat) { return open_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_open) { return open_exit(args->ret); }

/* Sensitive syscalls: one enter/exit tracepoint pair each (only that syscall pays). Arguments are
 * the tracepoint's first four syscall args, read generically at their fixed offsets (16, 24, ...)
 * of the syscall tracepoint record. */
static __always_inline int sys_enter_common(void *ctx, u32 nr, int mode_arg)
{
    u64 cg = bpf_get_current_cgroup_id();
    if (cgroup_flags(cg) & CG_HOST)
        return 0;
    struct sys_rec r = {};
    r.nr = nr;
    bpf_probe_read_kernel(r.args, sizeof(r.args), (char *)ctx + 16);
    if (mode_arg >= 0 && mode_arg < 4 && !(r.args[mode_arg] & 06000))
        return 0;  /* chmod family: only setuid/setgid bits are sensitive */
    u32 tid = (u32)bpf_get_current_pid_tgid();
    pending_sys.update(&tid, &r);
    return 0;
}

static __always_inline int sys_exit_common(s64 ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sys_rec *p = pending_sys.lookup(&tid);
    if (!p)
        return 0;
    struct sys_rec *r = events.ringbuf_reserve(sizeof(struct sys_rec));
    if (!r) {
        count_drop(OP_SYS);
    } else {
        bpf_probe_read_kernel(r, sizeof(*r), p);
        fill_hdr(&r->h, OP_SYS);
        r->ret = ret;
        events.ringbuf_submit(r, wake_for(&r->h, 0));
    }
    pending_sys.delete(&tid);
    return 0;
}

/* Written out one by one: BCC generates each tracepoint's args struct from the probe names it
 * finds in the source text, so the names cannot come from a macro. Each pair is compiled only
 * when the loader found the tracepoint (-DHAVE_<name>): kernels without CONFIG_MODULES have no
 * init_module tracepoints, for instance. x86_64 syscall numbers; the last value is the index of
 * the mode argument for the chmod family (-1: none). */
#ifdef HAVE_ptrace
TRACEPOINT_PROBE(syscalls, sys_enter_ptrace) { return sys_enter_common(args, 101, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_ptrace) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_mount
TRACEPOINT_PROBE(syscalls, sys_enter_mount) { return sys_enter_common(args, 165, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_mount) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_umount
TRACEPOINT_PROBE(syscalls, sys_enter_umount) { return sys_enter_common(args, 166, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_umount) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_unshare
TRACEPOINT_PROBE(syscalls, sys_enter_unshare) { return sys_enter_common(args, 272, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_unshare) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_setns
TRACEPOINT_PROBE(syscalls, sys_enter_setns) { return sys_enter_common(args, 308, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setns) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_memfd_create
TRACEPOINT_PROBE(syscalls, sys_enter_memfd_create) { return sys_enter_common(args, 319, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_memfd_create) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_init_module
TRACEPOINT_PROBE(syscalls, sys_enter_init_module) { return sys_enter_common(args, 175, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_init_module) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_finit_module
TRACEPOINT_PROBE(syscalls, sys_enter_finit_module) { return sys_enter_common(args, 313, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_finit_module) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_bpf
TRACEPOINT_PROBE(syscalls, sys_enter_bpf) { return sys_enter_common(args, 321, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_bpf) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_setuid
TRACEPOINT_PROBE(syscalls, sys_enter_setuid) { return sys_enter_common(args, 105, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setuid) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_setgid
TRACEPOINT_PROBE(syscalls, sys_enter_setgid) { return sys_enter_common(args, 106, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgid) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_chmod
TRACEPOINT_PROBE(syscalls, sys_enter_chmod) { return sys_enter_common(args, 90, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_chmod) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_fchmod
TRACEPOINT_PROBE(syscalls, sys_enter_fchmod) { return sys_enter_common(args, 91, 1); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmod) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_fchmodat
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat) { return sys_enter_common(args, 268, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_fchmodat2
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2) { return sys_enter_common(args, 452, 2); }
TRACEPOINT_PROBE(syscalls, sys_exit_fchmodat2) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_personality
TRACEPOINT_PROBE(syscalls, sys_enter_personality) { return sys_enter_common(args, 135, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_personality) { return sys_exit_common(args->ret); }
#endif
#ifdef HAVE_keyctl
TRACEPOINT_PROBE(syscalls, sys_enter_keyctl) { return sys_enter_common(args, 250, -1); }
TRACEPOINT_PROBE(syscalls, sys_exit_keyctl) { return sys_exit_common(args->ret); }
#endif
#endif

/* ---------------------------------------------------------------- lean profile: socket hooks -- */
/* The lean profile attaches no syscall tracepoint at all: an attached sys_enter/sys_exit
 * tracepoint, any one, makes every syscall of every task on the host take the slow tracing path
 * (the "floor" bench/overhead.py measures). Network records come instead from cgroup socket hooks
 * attached at the cgroup2 root, which run only on the operation they hook: connect (TCP and UDP),
 * sendmsg with a destination (UDP), bind (a UDP bind is its listen), and sock_ops for TCP listen
 * and for each accepted connection. Records keep the full profile's layout; F_NET_HOOK says the
 * hook ran before the operation, so its outcome is not known. The loader loads and attaches these
 * only in the lean profile, never beside the syscall network tracepoints. */
struct listen_key {
    u64 netns;            /* network namespace cookie: the same port in two pods is two listeners */
    u16 port;
    u16 family;
    u32 _pad;
};
BPF_TABLE("lru_hash", struct listen_key, struct hdr, listeners, 16384);  /* TCP listener -> its header */
/* One 32-bit context load: the verifier refuses the 64-bit load clang would merge two into. */
#define CTX_WORD(field) (*(volatile u32 *)&(field))

/* Failed reserves by kind; bpf_ringbuf_query is not allowed in socket programs, so no room split. */
static __always_inline void count_drop_hook(u32 op)
{
    u64 *n = drops.lookup(&op);
    if (n)
        __sync_fetch_and_add(n, 1);
}

/* The first-seen filter of net_seen for a hook's record: 1 if counted (not to be sent). */
static __always_inline int hook_seen(u32 op, u64 cgroup_id, const char *comm, const u8 *addr, u16 port, u16 proto)
{
#if NET_DEDUP
    struct net_key k = {};
    k.cgroup_id = cgroup_id;
    bpf_probe_read_kernel(k.comm, sizeof(k.comm), comm);
    bpf_probe_read_kernel(k.addr, sizeof(k.addr), addr);
    k.op = op;
    k.port = port;
    k.proto = proto;
    k.ok = 1;
    u64 *n = net_counts.lookup(&k);
    if (n) {
        __sync_fetch_and_add(n, 1);
        return 1;
    }
    u64 one = 1;
    return net_counts.insert(&k, &one) != 0;
#else
    return 0;
#endif
}

/* One record from a hook, with the current task's header. */
static __always_inline int hook_emit(u32 op, u16 family, u16 proto, const u8 *saddr, u16 sport,
                                     const u8 *daddr, u16 dport)
{
    if (op != OP_LISTEN) {
        char comm[16];
        bpf_get_current_comm(comm, sizeof(comm));
        if (hook_seen(op, bpf_get_current_cgroup_id(), comm, daddr, dport, proto))
            return 0;
    }
    struct net_rec *r = events.ringbuf_reserve(sizeof(struct net_rec));
    if (!r) {
        count_drop_hook(op);
        return 0;
    }
    __builtin_memset(r, 0, sizeof(*r));
    fill_hdr(&r->h, op);
    r->h.flags |= F_NET_HOOK;
    r->family = family;
    r->proto = proto;
    r->sport = sport;
    r->dport = dport;
    bpf_probe_read_kernel(r->saddr, sizeof(r->saddr), saddr);
    bpf_probe_read_kernel(r->daddr, sizeof(r->daddr), daddr);
    events.ringbuf_submit(r, wake_for(&r->h, 0));
    return 0;
}

static __always_inline u16 sa_proto(struct bpf_sock_addr *ctx)
{
    return ctx->protocol == 6 || ctx->protocol == 17 ? (u16)ctx->protocol : 0;
}

static __always_inline int hook_connect4(struct bpf_sock_addr *ctx, int udp_only)
{
    u8 zero[16] = {}, daddr[16] = {};
    u32 ip = ctx->user_ip4;
    if (udp_only && !ip)
        return 1;
    __builtin_memcpy(daddr, &ip, 4);
    hook_emit(OP_CONNECT, 2, sa_proto(ctx), zero, 0, daddr, ntohs((u16)ctx->user_port));
    return 1;
}

static __always_inline int hook_connect6(struct bpf_sock_addr *ctx, int udp_only)
{
    u8 zero[16] = {};
    u32 ip[4];
    ip[0] = CTX_WORD(ctx->user_ip6[0]);  /* context fields are read one word at a time */
    ip[1] = CTX_WORD(ctx->user_ip6[1]);
    ip[2] = CTX_WORD(ctx->user_ip6[2]);
    ip[3] = CTX_WORD(ctx->user_ip6[3]);
    if (udp_only && !(ip[0] | ip[1] | ip[2] | ip[3]))
        return 1;
    hook_emit(OP_CONNECT, 10, sa_proto(ctx), zero, 0, (u8 *)ip, ntohs((u16)ctx->user_port));
    return 1;
}

int lean_connect4(struct bpf_sock_addr *ctx) { return hook_connect4(ctx, 0); }
int lean_connect6(struct bpf_sock_addr *ctx) { return hook_connect6(ctx, 0); }
int lean_sendmsg4(struct bpf_sock_addr *ctx) { return hook_connect4(ctx, 1); }
int lean_sendmsg6(struct bpf_sock_addr *ctx) { return hook_connect6(ctx, 1); }

/* After a successful bind: a UDP bind is that socket's listen (as in the full profile); a TCP
 * bind is reported when it listens (sock_ops below). */
static __always_inline int hook_bind(struct bpf_sock *sk, u16 family)
{
    if (sk->protocol != 17)
        return 1;
    u8 zero[16] = {}, saddr[16] = {};
    if (family == 2) {
        u32 ip = sk->src_ip4;
        __builtin_memcpy(saddr, &ip, 4);
    } else {
        u32 ip[4];
        ip[0] = CTX_WORD(sk->src_ip6[0]);
        ip[1] = CTX_WORD(sk->src_ip6[1]);
        ip[2] = CTX_WORD(sk->src_ip6[2]);
        ip[3] = CTX_WORD(sk->src_ip6[3]);
        __builtin_memcpy(saddr, ip, 16);
    }
    hook_emit(OP_LISTEN, family, 17, saddr, (u16)sk->src_port, zero, 0);
    return 1;
}

int lean_bind4(struct bpf_sock *sk) { return hook_bind(sk, 2); }
int lean_bind6(struct bpf_sock *sk) { return hook_bind(sk, 10); }

/* sock_ops: TCP_LISTEN_CB runs in listen() (process context): report the listener and remember
 * its header by (netns, port); PASSIVE_ESTABLISHED_CB runs in softirq for each accepted
 * connection, where the current task is whoever was interrupted, so the record takes the
 * listener's header. */
static __always_inline void ops_addrs(struct bpf_sock_ops *ctx, u8 *local, u8 *remote)
{
    if (ctx->family == 2) {
        u32 l = ctx->local_ip4, r = ctx->remote_ip4;
        __builtin_memcpy(local, &l, 4);
        __builtin_memcpy(remote, &r, 4);
        return;
    }
    u32 l6[4], r6[4];
    l6[0] = CTX_WORD(ctx->local_ip6[0]);
    l6[1] = CTX_WORD(ctx->local_ip6[1]);
    l6[2] = CTX_WORD(ctx->local_ip6[2]);
    l6[3] = CTX_WORD(ctx->local_ip6[3]);
    r6[0] = CTX_WORD(ctx->remote_ip6[0]);
    r6[1] = CTX_WORD(ctx->remote_ip6[1]);
    r6[2] = CTX_WORD(ctx->remote_ip6[2]);
    r6[3] = CTX_WORD(ctx->remote_ip6[3]);
    __builtin_memcpy(local, l6, 16);
    __builtin_memcpy(remote, r6, 16);
}

int lean_sockops(struct bpf_sock_ops *ctx)
{
    u32 op = ctx->op;
    if (op != BPF_SOCK_OPS_TCP_LISTEN_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
        return 1;
    u16 family = (u16)ctx->family;
    if (family != 2 && family != 10)
        return 1;
    u8 local[16] = {}, remote[16] = {};
    ops_addrs(ctx, local, remote);
    struct listen_key lk = {.netns = bpf_get_netns_cookie(ctx), .port = (u16)ctx->local_port, .family = family};
    if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
        struct hdr h = {};
        fill_hdr(&h, OP_LISTEN);
        listeners.update(&lk, &h);
        hook_emit(OP_LISTEN, family, 6, local, lk.port, remote, 0);
        return 1;
    }
    struct hdr *lh = listeners.lookup(&lk);
    if (!lh)
        return 1;  /* a listener from before the sensor: its accepts are not attributed */
    u16 rport = (u16)(ctx->remote_port >> 16);  /* network order, in the high half on little endian */
    if (!rport)
        rport = (u16)ctx->remote_port;
    rport = ntohs(rport);
    if (hook_seen(OP_ACCEPT, lh->cgroup_id, lh->comm, remote, lk.port, 6))
        return 1;
    struct net_rec *r = events.ringbuf_reserve(sizeof(struct net_rec));
    if (!r) {
        count_drop_hook(OP_ACCEPT);
        return 1;
    }
    __builtin_memset(r, 0, sizeof(*r));
    bpf_probe_read_kernel(&r->h, sizeof(r->h), lh);
    r->h.op = OP_ACCEPT;
    r->h.ktime_ns = bpf_ktime_get_ns();
    r->h.flags = F_NET_HOOK;
    r->family = family;
    r->proto = 6;
    r->sport = lk.port;
    r->dport = rport;
    bpf_probe_read_kernel(r->saddr, sizeof(r->saddr), local);
    bpf_probe_read_kernel(r->daddr, sizeof(r->daddr), remote);
    events.ringbuf_submit(r, wake_for(&r->h, 0));
    return 1;
}
