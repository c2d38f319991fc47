/* cgsentry record layouts and opcodes — BCC dialect (compiled by BCC's clang, not by kbuild).
 *
 * The single source of truth for what crosses the ring buffer. sensor/layout.py mirrors these
 * structs with struct.Struct formats; tests/kernel/test_bpf_layout.py compiles this header with
 * BCC and pins every size and offset against the mirror.
 *
 * Layout rules: naturally aligned fields, explicit padding, no bitfields, so the C and Python
 * sides agree without packing pragmas.
 */
#ifndef CGSENTRY_H
#define CGSENTRY_H

#ifndef ARGS_MAX
#define ARGS_MAX 64           /* argv entries captured per exec */
#endif
#ifndef ARGS_SIZE
#define ARGS_SIZE 4096        /* bytes of argv captured per exec, NULs included; a power of two */
#endif
#define PATH_LEN 256          /* exec filename and sensitive open paths */
#define UNIX_PATH_LEN 64      /* AF_UNIX connect destination (docker.sock etc.) */
#define PREFIX_MAX 64         /* sensitive path prefixes the kernel matches */
#define PREFIX_LEN 32
#define PROFILE_SLOTS 4096    /* syscall-profiler prefilter: profiled cgroups per (id % slots) */

/* prefix modes; the trie's value is a mask of (1 << mode) */
#define PM_ANY 0
#define PM_WRITE 1
#define PM_MEM 2

enum op {
    OP_EXEC = 1,
    OP_FORK = 2,
    OP_EXIT = 3,
    OP_CONNECT = 4,
    OP_ACCEPT = 5,
    OP_LISTEN = 6,
    OP_SYSCALL = 7,   /* first time a (cgroup, syscall nr) pair is seen */
    OP_OPEN = 8,      /* open of a sensitive path */
    OP_SYS = 9,       /* a sensitive syscall */
    OP_MAX = 10,
};

/* flags in struct watch.flags (map `cgroups`, written by userspace) */
#define CG_HOST 1         /* known host cgroup: no sensitive-event checks */
#define CG_PROFILE 2      /* count syscalls of this cgroup (learning images) */
#define CG_URGENT 4       /* wake the reader for each record (images in enforce mode) */

/* flags in record headers */
#define F_KILLED 1        /* exec was killed in the kernel (banned process) */
#define F_ARGS_TRUNC 2    /* more argv than ARGS_MAX entries or ARGS_SIZE bytes: the rest is cut */
#define F_EXIT_SIGNAL 4   /* exit without exit_group(): killed by a signal or thread exit */
#define F_ARGS_FAULT 8    /* an argv entry (or argv itself) was not readable: its page was not
                           * faulted in yet; the entry is empty and userspace reads it later */
#define F_NET_HOOK 16     /* from a cgroup socket hook (lean profile): before the operation, outcome unknown */

struct hdr {              /* 64 bytes */
    u32 op;
    u32 pid;              /* tgid */
    u32 tid;
    u32 uid;
    u32 gid;
    u32 flags;
    u64 ktime_ns;         /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
    u64 cgroup_id;        /* cgroup v2 id == inode of the cgroup dir */
    char comm[16];
    u32 ppid;             /* parent tgid from the kernel's fork lineage (0: forked before the sensor) */
    u32 anc;              /* nearest ancestor that exec'd or predates the sensor (userspace knows it) */
};

/* Sent only up to args[args_len]: the ring holds what was used, not ARGS_SIZE per exec. */
struct exec_rec {
    struct hdr h;
    u32 old_pid;
    u32 argc;             /* entries captured in args */
    u32 args_len;         /* bytes of args used */
    u32 _pad;
    char filename[PATH_LEN];
    char args[ARGS_SIZE]; /* argv as NUL-terminated strings back to back, like /proc/PID/cmdline;
                           * a cut last entry has no NUL */
};

struct fork_rec {
    struct hdr h;
    u32 parent_pid;
    u32 child_pid;
};

struct exit_rec {
    struct hdr h;
    s32 exit_code;        /* exit_group() status; -1 when not known (signal) */
    u32 _pad;
};

struct net_rec {          /* connect, accept, listen */
    struct hdr h;
    s64 ret;              /* syscall result (negative errno on failure) */
    u32 fd;
    u16 family;           /* AF_INET 2, AF_INET6 10, AF_UNIX 1 */
    u16 proto;            /* IPPROTO_TCP 6, IPPROTO_UDP 17, 0 unknown */
    u16 sport;            /* host byte order */
    u16 dport;
    u32 _pad;
    u8 saddr[16];         /* v4 in the first 4 bytes */
    u8 daddr[16];
    char unix_path[UNIX_PATH_LEN];
};

struct syscall_rec {
    struct hdr h;
    u32 nr;
    u32 _pad;
};

struct open_rec {
    struct hdr h;
    s64 ret;
    u32 flags;            /* open(2) flags */
    u32 mode;
    char path[PATH_LEN];
};

struct sys_rec {
    struct hdr h;
    s64 ret;
    u32 nr;
    u32 _pad;
    u64 args[4];
};

/* map value types */
struct watch {
    u32 flags;            /* CG_* */
    u32 _pad;
};

struct ban_key {
    u64 cgroup_id;        /* 0 = every non-host cgroup */
    char comm[16];
};

struct sc_key {
    u64 cgroup_id;
    u64 nr;
};

/* per-(cgroup, comm, endpoint, outcome) network counters: only the first occurrence of a key
 * is sent up the ring buffer; repeats are counted here and read in batches */
struct net_key {
    u64 cgroup_id;
    char comm[16];
    u8 addr[16];          /* connect: destination; accept: peer */
    u32 op;
    u16 port;             /* connect: destination port; accept: local (listening) port */
    u16 proto;
    u32 ok;               /* 1: success (or EINPROGRESS), 0: failure */
    u32 _pad;
};

struct lineage {          /* map `lineage`: pid -> parent, filled at fork */
    u32 ppid;
    u32 flags;            /* LN_EXECED: the process exec'd since its fork (its exit is reported) */
    u32 anc;              /* ppid, or the parent's anc if the parent is a fork-only process */
    s32 exit_code;        /* exit_group() status, valid with LN_CODE */
};
#define LN_EXECED 1
#define LN_CODE 2

struct count_key {        /* map `proc_counts`: forks/exits per cgroup, never sent as records */
    u64 cgroup_id;
    u32 op;
    u32 _pad;
};

struct prefix_key {       /* LPM trie key: a path prefix of prefixlen bits */
    u32 prefixlen;
    char s[PREFIX_LEN];
};

#endif
