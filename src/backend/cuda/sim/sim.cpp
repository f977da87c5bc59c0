/* sim.cpp — the simulator's launch and thread scheduler: the threads of a block run as fibers
 * (a hand-written x86-64 context switch, ucontext elsewhere) on pooled mmap'd stacks, switching
 * only at __syncthreads, warp collectives and thread exit; collectives complete when their
 * last lane arrives; a stuck block is diagnosed as a deadlock instead of hanging.
 *
 * Everything here is per host thread (one scheduler each), so launches from several host
 * threads run concurrently and independently. */
#include <pthread.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "backend/cuda/sim/sim_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define PNSIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PNSIM_ASAN 1
#endif
#endif
#ifndef PNSIM_ASAN
#define PNSIM_ASAN 0
#endif
#if PNSIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(PONTE_SIM_UCONTEXT)
#define PNSIM_X86 1
#else
#define PNSIM_X86 0
#include <ucontext.h>
#endif

__thread pnsim_tls_t pnsim_tls;

/* ───────────────────────────── context switch ───────────────────────────── */

#if PNSIM_X86
/* pnsim_ctx_switch(save, load): saves the callee-saved registers (System V: rbx, rbp,
 * r12-r15), MXCSR and the x87 control word on the current stack, stores rsp in *save, and
 * resumes the context whose rsp is load. pnsim_ctx_entry starts a new fiber: it calls r13(r12)
 * on a 16-aligned stack (fiber_main never returns). */
extern "C" void pnsim_ctx_switch(void **save, void *load);
extern "C" void pnsim_ctx_entry(void);
__asm__(".text\n"
        ".globl pnsim_ctx_switch\n"
        ".hidden pnsim_ctx_switch\n"
        ".type pnsim_ctx_switch,@function\n"
        ".p2align 4\n"
        "pnsim_ctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size pnsim_ctx_switch, .-pnsim_ctx_switch\n"
        ".globl pnsim_ctx_entry\n"
        ".hidden pnsim_ctx_entry\n"
        ".type pnsim_ctx_entry,@function\n"
        ".p2align 4\n"
        "pnsim_ctx_entry:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined %rip\n"
        "    movq %r12, %rdi\n"
        "    callq *%r13\n"
        "    ud2\n"
        "    .cfi_endproc\n"
        ".size pnsim_ctx_entry, .-pnsim_ctx_entry\n");
#endif

namespace {

/* A suspended execution context: the host's (the launching call) or a fiber's. */
struct Ctx {
    void *sp = nullptr;
#if PNSIM_ASAN
    const void *stack_lo = nullptr;
    size_t stack_size = 0;
    void *fake = nullptr;
#endif
#if !PNSIM_X86
    ucontext_t uc;
#endif
};

struct Fiber {
    Ctx ctx;
    char *map;   /* the mapping: a guard page, then the stack */
    size_t map_size;
    char *lo;    /* usable stack [lo, lo + size) */
    size_t size;
    size_t color; /* bytes left unused at the stack top (cache colouring) */
    Fiber *next;  /* free list */
};

enum : uint8_t { T_FRESH, T_READY, T_SYNC, T_WARP, T_DONE };

/* One simulated thread of the running block. */
struct SimThread {
    uint3 idx;
    uint8_t state;
    uint8_t kind;   /* the collective it waits at (T_WARP) */
    uint16_t lane;
    unsigned warp;
    unsigned mask;
    int arg, width;
    uint64_t val, result;
    Fiber *fiber; /* NULL until it first runs, and after it exits */
};

/* A thread's cp.async not yet completed: group ~0u until committed. */
struct AsyncCopy {
    void *dst;
    const void *src;
    unsigned bytes, group;
};

struct Warp {
    unsigned exist;   /* lanes present in the block */
    unsigned arrived; /* lanes waiting at a collective */
    unsigned done;    /* lanes that exited */
};

const char *const kind_names[PNSIM_KIND_COUNT] = {
    "__syncwarp",        "__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",
    "__shfl_xor_sync",   "__ballot_sync",     "__any_sync",        "__all_sync",
    "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync",
    "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync",  "__reduce_xor_sync"};

const uint64_t GARBAGE = 0xCDCDCDCDCDCDCDCDull;

struct Sched {
    Ctx host;
    Fiber *free_fibers = nullptr;
    std::vector<Fiber *> fibers;
    size_t stack_size = 0, page = 4096;
    bool shuffle = false;
    uint64_t rng = 0;

    /* the launch */
    bool in_launch = false;
    void (*fn)(void *) = nullptr;
    void *ctx = nullptr;
    uint3 shape = {0, 0, 0}; /* block shape th/warps were built for */
    int n = 0;               /* threads per block */
    std::vector<SimThread> th;
    std::vector<std::vector<AsyncCopy>> async; /* per thread: its pending cp.async */
    std::vector<unsigned> async_groups;        /* per thread: groups committed so far */
    std::vector<Warp> warps;
    unsigned char *smem = nullptr;
    size_t smem_cap = 0, smem_bytes = 0;

    /* the running block */
    SimThread *cur = nullptr;
    int live = 0;
    std::vector<int> queue; /* ready threads (ring) */
    int qhead = 0, qlen = 0;
    std::vector<int> order; /* start order of fresh threads (shuffled mode) */
    int next_fresh = 0;
    std::vector<int> sync_wait; /* threads at the block barrier, in arrival order */
    int sync_op = 0, sync_acc = 0;
    bool failed = false;
    char msg[512];

    ~Sched()
    {
        for (Fiber *f : fibers) {
#if PNSIM_ASAN
            ASAN_UNPOISON_MEMORY_REGION(f->lo, f->size);
#endif
            munmap(f->map, f->map_size);
            delete f;
        }
        free(smem);
    }
};

__thread Sched *tl_sched = nullptr;

/* Owns the host thread's scheduler; frees it (and the fiber stacks) at thread exit. */
struct SchedOwner {
    Sched *s = nullptr;
    ~SchedOwner()
    {
        delete s;
        tl_sched = nullptr;
    }
};
thread_local SchedOwner sched_owner;

size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    unsigned long long x = strtoull(v, &end, 0);
    if (*end == 'k' || *end == 'K') x <<= 10;
    if (*end == 'm' || *end == 'M') x <<= 20;
    return x ? (size_t)x : dflt;
}

Sched *sched_get(void)
{
    if (tl_sched) return tl_sched;
    Sched *s = new Sched();
    long pg = sysconf(_SC_PAGESIZE);
    s->page = pg > 0 ? (size_t)pg : 4096;
    size_t dflt = PNSIM_ASAN ? 256 * 1024 : 64 * 1024;
    size_t st = env_size("PONTE_SIM_STACK", dflt);
    if (st < 16 * 1024) st = 16 * 1024;
    s->stack_size = (st + s->page - 1) / s->page * s->page;
    const char *sh = getenv("PONTE_SIM_SHUFFLE");
    if (sh && *sh) {
        s->shuffle = true;
        uint64_t h = 1469598103934665603ull; /* FNV-1a of the seed text */
        for (const char *c = sh; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        s->rng = h | 1;
    }
#if PNSIM_ASAN
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        void *lo;
        size_t sz;
        if (pthread_attr_getstack(&a, &lo, &sz) == 0) {
            s->host.stack_lo = lo;
            s->host.stack_size = sz;
        }
        pthread_attr_destroy(&a);
    }
#endif
    sched_owner.s = s;
    tl_sched = s;
    return s;
}

uint64_t rnd(Sched *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ull;
}

inline void switch_ctx(Ctx *from, Ctx *to)
{
#if PNSIM_ASAN
    __sanitizer_start_switch_fiber(&from->fake, to->stack_lo, to->stack_size);
#endif
#if PNSIM_X86
    pnsim_ctx_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#if PNSIM_ASAN
    const void *old_lo;
    size_t old_size;
    __sanitizer_finish_switch_fiber(from->fake, &old_lo, &old_size);
#endif
}

/* ───────────────────────────── fibers ───────────────────────────── */

void fiber_main(void *arg);

#if !PNSIM_X86
void fiber_entry_uc(void) { fiber_main(tl_sched); }
#endif

/* Puts f back at its entry point (after its thread finished or was abandoned). */
void fiber_reset(Sched *s, Fiber *f)
{
#if PNSIM_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f->lo, f->size);
    f->ctx.fake = nullptr;
    f->ctx.stack_lo = f->lo;
    f->ctx.stack_size = f->size;
#endif
#if PNSIM_X86
    /* stack tops staggered over a page so fibers' hot frames do not share cache sets */
    uint64_t *top = (uint64_t *)(((uintptr_t)(f->lo + f->size - f->color)) & ~(uintptr_t)15);
    top[-1] = 0;
    top[-2] = 0;
    top[-3] = (uint64_t)(uintptr_t)&pnsim_ctx_entry; /* ret lands here with rsp = top - 16 */
    top[-4] = 0;                                     /* rbp */
    top[-5] = 0;                                     /* rbx */
    top[-6] = (uint64_t)(uintptr_t)s;                /* r12: argument */
    top[-7] = (uint64_t)(uintptr_t)&fiber_main;      /* r13: function */
    top[-8] = 0;                                     /* r14 */
    top[-9] = 0;                                     /* r15 */
    uint32_t ctl[2];
    uint16_t cw;
    __asm__ __volatile__("stmxcsr %0" : "=m"(ctl[0]));
    __asm__ __volatile__("fnstcw %0" : "=m"(cw));
    ctl[1] = cw;
    memcpy(&top[-10], ctl, 8);
    f->ctx.sp = &top[-10];
#else
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->lo;
    f->ctx.uc.uc_stack.ss_size = f->size;
    f->ctx.uc.uc_link = nullptr;
    makecontext(&f->ctx.uc, fiber_entry_uc, 0);
#endif
}

/* A free fiber, or a new one; NULL when no stack could be mapped. */
Fiber *fiber_get(Sched *s)
{
    if (Fiber *f = s->free_fibers) {
        s->free_fibers = f->next;
        return f;
    }
    size_t map_size = s->stack_size + s->page;
    void *m = mmap(nullptr, map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    mprotect(m, s->page, PROT_NONE); /* guard page below the stack */
    Fiber *f = new Fiber();
    f->map = (char *)m;
    f->map_size = map_size;
    f->lo = f->map + s->page;
    f->size = s->stack_size;
    f->color = (s->fibers.size() * 5 % 64) * 64;
    fiber_reset(s, f);
    s->fibers.push_back(f);
    return f;
}

void fiber_put(Sched *s, Fiber *f)
{
    f->next = s->free_fibers;
    s->free_fibers = f;
}

/* ───────────────────────────── scheduling ───────────────────────────── */

inline void set_current(Sched *s, SimThread *t)
{
    s->cur = t;
    pnsim_tls.thread_idx = t->idx;
}

inline void push_ready(Sched *s, SimThread *t)
{
    t->state = T_READY;
    int pos = s->qhead + s->qlen;
    if (pos >= s->n) pos -= s->n;
    s->queue[pos] = (int)(t - s->th.data());
    s->qlen++;
}

/* The next thread to run: a ready one (FIFO), else the next fresh one; in shuffled mode a
 * random one of those. NULL when none. */
SimThread *pick(Sched *s)
{
    bool fresh = s->next_fresh < s->n;
    int r;
    if (!s->shuffle) {
        if (!s->qlen) return fresh ? &s->th[s->next_fresh++] : nullptr;
        r = 0;
    } else {
        int total = s->qlen + (fresh ? 1 : 0);
        if (!total) return nullptr;
        r = (int)(rnd(s) % (uint64_t)total);
        if (r == s->qlen) return &s->th[s->order[s->next_fresh++]];
    }
    int pos = s->qhead + r;
    if (pos >= s->n) pos -= s->n;
    int i = s->queue[pos];
    s->queue[pos] = s->queue[s->qhead];
    if (++s->qhead == s->n) s->qhead = 0;
    s->qlen--;
    return &s->th[i];
}

/* Ends the block from inside a fiber: records the message and returns to the host for good. */
__attribute__((noreturn, format(printf, 2, 3))) void fail(Sched *s, const char *fmt, ...)
{
    SimThread *t = s->cur;
    int k = snprintf(s->msg, sizeof s->msg, "block (%u,%u,%u) thread (%u,%u,%u): ",
                     pnsim_tls.block_idx.x, pnsim_tls.block_idx.y, pnsim_tls.block_idx.z,
                     t->idx.x, t->idx.y, t->idx.z);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg + k, sizeof s->msg - (size_t)k, fmt, ap);
    va_end(ap);
    s->failed = true;
    switch_ctx(&t->fiber->ctx, &s->host);
    __builtin_unreachable();
}

/* Suspends the current thread (already marked waiting) and runs the next one, or returns to
 * the host when none is ready. Returns when another thread made this one ready again. */
void block_current(Sched *s)
{
    SimThread *t = s->cur;
    SimThread *n = pick(s);
    if (n == t) return; /* a yield with nothing else ready */
    Ctx *to = &s->host;
    if (n) {
        if (!n->fiber && !(n->fiber = fiber_get(s)))
            fail(s, "cannot map a fiber stack (%zu bytes)", s->stack_size);
        set_current(s, n);
        to = &n->fiber->ctx;
    }
    switch_ctx(&t->fiber->ctx, to);
}

void release_sync(Sched *s, SimThread *self)
{
    int cnt = (int)s->sync_wait.size();
    int r = s->sync_op == 1 ? s->sync_acc
          : s->sync_op == 2 ? s->sync_acc == cnt
          : s->sync_op == 3 ? s->sync_acc > 0
                            : 0;
    for (int i : s->sync_wait) {
        SimThread *w = &s->th[i];
        w->result = (uint64_t)(unsigned)r;
        if (w != self) push_ready(s, w);
    }
    s->sync_wait.clear();
}

void warp_complete(Sched *s, SimThread *lead, unsigned eff, SimThread *self);

/* Completes the collectives of warp w that no longer wait for anyone (after a lane exited:
 * collectives wait only for the non-exited lanes of their mask, as PTX's *.sync do). */
void warp_recheck(Sched *s, Warp *w, unsigned warp)
{
    SimThread *base = &s->th[(size_t)warp * 32];
    for (bool progress = true; progress && w->arrived;) {
        progress = false;
        for (unsigned m = w->arrived; m; m &= m - 1) {
            SimThread *t = &base[__builtin_ctz(m)];
            unsigned eff = t->mask & w->exist & ~w->done;
            if ((w->arrived & eff) == eff) {
                warp_complete(s, t, eff, nullptr);
                progress = true;
                break;
            }
        }
    }
}

/* Completes thread i's pending copies whose group is committed and numbered below `below`,
 * or every pending copy when `all`. */
void async_complete(Sched *s, int i, unsigned below, bool all)
{
    std::vector<AsyncCopy> &q = s->async[(size_t)i];
    size_t keep = 0;
    for (size_t k = 0; k < q.size(); k++) {
        AsyncCopy c = q[k];
        if (all || (c.group != ~0u && c.group < below)) memcpy(c.dst, c.src, c.bytes);
        else q[keep++] = c;
    }
    q.resize(keep);
}

void thread_exit(Sched *s, SimThread *t)
{
    async_complete(s, (int)(t - s->th.data()), 0, true); /* a thread's copies still land */
    t->state = T_DONE;
    s->live--;
    Warp *w = &s->warps[t->warp];
    w->done |= 1u << t->lane;
    if (w->arrived) warp_recheck(s, w, t->warp);
    if (!s->sync_wait.empty() && (int)s->sync_wait.size() == s->live) release_sync(s, nullptr);
}

/* Every fiber runs this: the kernel body for the current thread, again and again. */
void fiber_main(void *arg)
{
    Sched *s = (Sched *)arg;
#if PNSIM_ASAN
    const void *old_lo;
    size_t old_size;
    __sanitizer_finish_switch_fiber(nullptr, &old_lo, &old_size);
#endif
    for (;;) {
        SimThread *t = s->cur;
        s->fn(s->ctx);
        thread_exit(s, t);
        Fiber *self = t->fiber;
        t->fiber = nullptr;
        SimThread *n = pick(s);
        if (n && !n->fiber) { /* a fresh thread: run it on this fiber, no switch */
            n->fiber = self;
            set_current(s, n);
            continue;
        }
        fiber_put(s, self);
        Ctx *to = &s->host;
        if (n) {
            set_current(s, n);
            to = &n->fiber->ctx;
        }
        switch_ctx(&self->ctx, to);
        /* resumed from the free list: s->cur is the fresh thread given to this fiber */
    }
}

/* The one-line reason a block with no ready thread is stuck. */
void diagnose(Sched *s)
{
    int at_sync = (int)s->sync_wait.size();
    int k = snprintf(s->msg, sizeof s->msg, "deadlock in block (%u,%u,%u): ", pnsim_tls.block_idx.x,
                     pnsim_tls.block_idx.y, pnsim_tls.block_idx.z);
    size_t room = sizeof s->msg - (size_t)k;
    char *p = s->msg + k;
    for (int i = 0; i < s->n; i++) {
        SimThread *t = &s->th[i];
        if (t->state != T_WARP) continue;
        Warp *w = &s->warps[t->warp];
        SimThread *base = &s->th[(size_t)t->warp * 32];
        unsigned eff = t->mask & w->exist & ~w->done;
        int missing = -1;
        const char *why = "has not arrived";
        char other[96] = "";
        for (int l = 0; l < 32; l++) {
            if (!(eff >> l & 1)) continue;
            SimThread *o = &base[l];
            if (o->state == T_WARP && o->kind == t->kind && o->mask == t->mask) continue;
            missing = l;
            if (o->state == T_SYNC) why = "waits at __syncthreads";
            else if (o->state == T_WARP) {
                snprintf(other, sizeof other, "waits at %s(mask 0x%08x)", kind_names[o->kind],
                         o->mask);
                why = other;
            }
            break;
        }
        snprintf(p, room,
                 "thread (%u,%u,%u) waits at %s(mask 0x%08x) for lane %d of warp %u, which %s; "
                 "%d thread(s) wait at __syncthreads",
                 t->idx.x, t->idx.y, t->idx.z, kind_names[t->kind], t->mask, missing, t->warp, why,
                 at_sync);
        return;
    }
    snprintf(p, room, "%d of %d live thread(s) wait at __syncthreads", at_sync, s->live);
}

/* Completes the collective that lead waits at, over lanes eff (all arrived): checks they
 * agree, computes each lane's result and readies them all but self (the running thread, or
 * NULL). */
void warp_complete(Sched *s, SimThread *lead, unsigned eff, SimThread *self)
{
    Warp *w = &s->warps[lead->warp];
    SimThread *base = &s->th[(size_t)lead->warp * 32];
    int kind = lead->kind;
    for (unsigned m = eff; m; m &= m - 1) {
        SimThread *o = &base[__builtin_ctz(m)];
        if (o->kind != kind || o->mask != lead->mask)
            fail(s, "%s(mask 0x%08x) met lane %d at %s(mask 0x%08x) (lanes of a mask must call "
                    "the same collective with the same mask)",
                 kind_names[kind], lead->mask, (int)o->lane, kind_names[o->kind], o->mask);
    }
    uint64_t agg = 0;
    switch (kind) {
    case PNSIM_BALLOT:
    case PNSIM_ANY:
        for (unsigned m = eff; m; m &= m - 1) {
            int l = __builtin_ctz(m);
            if (base[l].val) agg |= 1ull << l;
        }
        if (kind == PNSIM_ANY) agg = agg != 0;
        break;
    case PNSIM_ALL:
        agg = 1;
        for (unsigned m = eff; m; m &= m - 1)
            if (!base[__builtin_ctz(m)].val) agg = 0;
        break;
    case PNSIM_RED_ADD:
    case PNSIM_RED_MIN_U:
    case PNSIM_RED_MAX_U:
    case PNSIM_RED_MIN_I:
    case PNSIM_RED_MAX_I:
    case PNSIM_RED_AND:
    case PNSIM_RED_OR:
    case PNSIM_RED_XOR: {
        bool first = true;
        uint32_t a = 0;
        for (unsigned m = eff; m; m &= m - 1) {
            uint32_t v = (uint32_t)base[__builtin_ctz(m)].val;
            if (first) {
                a = v;
                first = false;
                continue;
            }
            switch (kind) {
            case PNSIM_RED_ADD: a += v; break;
            case PNSIM_RED_MIN_U: a = v < a ? v : a; break;
            case PNSIM_RED_MAX_U: a = v > a ? v : a; break;
            case PNSIM_RED_MIN_I: a = (int32_t)v < (int32_t)a ? v : a; break;
            case PNSIM_RED_MAX_I: a = (int32_t)v > (int32_t)a ? v : a; break;
            case PNSIM_RED_AND: a &= v; break;
            case PNSIM_RED_OR: a |= v; break;
            default: a ^= v; break;
            }
        }
        agg = a;
        break;
    }
    default: break;
    }
    for (unsigned m = eff; m; m &= m - 1) {
        SimThread *o = &base[__builtin_ctz(m)];
        int lane = o->lane, width = o->width;
        int seg = lane & ~(width - 1);
        long src = lane;
        switch (kind) {
        case PNSIM_SHFL_IDX: src = seg + (o->arg & (width - 1)); break;
        case PNSIM_SHFL_UP:
            src = (long)lane - o->arg;
            if (src < seg) src = lane;
            break;
        case PNSIM_SHFL_DOWN:
            src = (long)lane + o->arg;
            if (src >= seg + width) src = lane;
            break;
        case PNSIM_SHFL_XOR:
            src = (long)((unsigned)lane ^ (unsigned)o->arg);
            if (src >= seg + width) src = lane;
            break;
        default: break;
        }
        if (kind >= PNSIM_SHFL_IDX && kind <= PNSIM_SHFL_XOR)
            o->result = (eff >> src & 1) ? base[src].val : GARBAGE;
        else
            o->result = agg;
    }
    w->arrived &= ~eff;
    for (unsigned m = eff; m; m &= m - 1) {
        SimThread *o = &base[__builtin_ctz(m)];
        if (o == self) o->state = T_READY;
        else push_ready(s, o);
    }
}

/* Builds the per-thread tables for a block shape (kept while launches keep the shape). */
void setup_shape(Sched *s, dim3 b)
{
    int n = (int)(b.x * b.y * b.z);
    s->n = n;
    s->shape = uint3{b.x, b.y, b.z};
    s->th.assign((size_t)n, SimThread());
    int nw = (n + 31) / 32;
    s->warps.assign((size_t)nw, Warp());
    for (int i = 0; i < n; i++) {
        SimThread *t = &s->th[i];
        t->idx = uint3{(unsigned)i % b.x, ((unsigned)i / b.x) % b.y, (unsigned)i / (b.x * b.y)};
        t->lane = (uint16_t)(i & 31);
        t->warp = (unsigned)i >> 5;
        s->warps[i >> 5].exist |= 1u << (i & 31);
    }
    s->async.assign((size_t)n, std::vector<AsyncCopy>());
    s->async_groups.assign((size_t)n, 0);
    s->queue.assign((size_t)n, 0);
    s->order.resize((size_t)n);
    s->sync_wait.reserve((size_t)n);
}

/* Runs the current block; false (message in s->msg) when it failed. */
bool run_block(Sched *s)
{
    for (int i = 0; i < s->n; i++) {
        s->th[i].state = T_FRESH;
        s->async[i].clear();
        s->async_groups[i] = 0;
    }
    for (Warp &w : s->warps) w.arrived = w.done = 0;
    s->live = s->n;
    s->qhead = s->qlen = 0;
    s->next_fresh = 0;
    s->sync_wait.clear();
    s->failed = false;
    if (s->shuffle) {
        for (int i = 0; i < s->n; i++) s->order[i] = i;
        for (int i = s->n - 1; i > 0; i--) {
            int j = (int)(rnd(s) % (uint64_t)(i + 1));
            int tmp = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = tmp;
        }
    }
    if (s->smem_bytes) memset(s->smem, 0xCD, s->smem_bytes);

    SimThread *t = pick(s);
    if (!(t->fiber = fiber_get(s))) {
        snprintf(s->msg, sizeof s->msg, "cannot map a fiber stack (%zu bytes)", s->stack_size);
        return false;
    }
    set_current(s, t);
    switch_ctx(&s->host, &t->fiber->ctx);
    if (!s->failed && s->live == 0) return true;
    if (!s->failed) diagnose(s);
    for (int i = 0; i < s->n; i++) { /* abandon the stuck threads' stacks */
        SimThread *o = &s->th[i];
        if (o->fiber) {
            fiber_reset(s, o->fiber);
            fiber_put(s, o->fiber);
            o->fiber = nullptr;
        }
    }
    return false;
}

} /* namespace */

/* ───────────────────────────── entry points ───────────────────────────── */

int pnsim_syncthreads(int op, int pred)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return pred != 0; /* outside a kernel */
    SimThread *t = s->cur;
    if (s->sync_wait.empty()) {
        s->sync_op = op;
        s->sync_acc = 0;
    } else if (op != s->sync_op) {
        fail(s, "__syncthreads variants differ between threads of the block");
    }
    s->sync_acc += pred != 0;
    t->state = T_SYNC;
    s->sync_wait.push_back((int)(t - s->th.data()));
    if ((int)s->sync_wait.size() == s->live) {
        release_sync(s, t);
        t->state = T_READY;
        return (int)t->result;
    }
    block_current(s);
    return (int)t->result;
}

uint64_t pnsim_warp(int kind, unsigned mask, uint64_t value, int arg, int width)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return value; /* outside a kernel */
    SimThread *t = s->cur;
    unsigned bit = 1u << t->lane;
    if (!(mask & bit))
        fail(s, "%s(mask 0x%08x) called by lane %d, which is not in the mask", kind_names[kind],
             mask, (int)t->lane);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail(s, "%s: width %d is not a power of two in [1, 32]", kind_names[kind], width);
    Warp *w = &s->warps[t->warp];
    t->kind = (uint8_t)kind;
    t->mask = mask;
    t->val = value;
    t->arg = arg;
    t->width = width;
    t->state = T_WARP;
    w->arrived |= bit;
    unsigned eff = mask & w->exist & ~w->done;
    if ((w->arrived & eff) == eff) {
        warp_complete(s, t, eff, t);
        return t->result;
    }
    block_current(s);
    return t->result;
}

unsigned pnsim_activemask(void)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return 1;
    Warp *w = &s->warps[s->cur->warp];
    return w->exist & ~w->done;
}

void pnsim_yield(void)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return;
    push_ready(s, s->cur);
    block_current(s);
}

void pnsim_cp_async(void *dst, const void *src, unsigned bytes)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) {
        memcpy(dst, src, bytes);
        return;
    }
    memset(dst, 0xCD, bytes);
    s->async[(size_t)(s->cur - s->th.data())].push_back(AsyncCopy{dst, src, bytes, ~0u});
}

void pnsim_cp_async_commit(void)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return;
    const size_t i = (size_t)(s->cur - s->th.data());
    for (AsyncCopy &c : s->async[i])
        if (c.group == ~0u) c.group = s->async_groups[i];
    s->async_groups[i]++;
}

void pnsim_cp_async_wait(int n)
{
    Sched *s = tl_sched;
    if (!s || !s->cur) return;
    const int i = (int)(s->cur - s->th.data());
    const unsigned made = s->async_groups[(size_t)i];
    async_complete(s, i, n < 0 || (unsigned)n >= made ? 0 : made - (unsigned)n, false);
}

long long pnsim_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* Runs fn(ctx) as every thread of every block of grid x block (checked) on the calling host
 * thread's scheduler: cudaSuccess, or cudaErrorLaunchFailure (after a diagnostic) or
 * cudaErrorLaunchOutOfResources (no memory for the dynamic shared memory). */
static cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, void (*fn)(void *), void *ctx)
{
    Sched *s = sched_get();
    if (smem > s->smem_cap) {
        size_t cap = (smem + 255) & ~(size_t)255;
        void *p = nullptr;
        if (posix_memalign(&p, 256, cap) != 0) return cudaErrorLaunchOutOfResources;
        free(s->smem);
        s->smem = (unsigned char *)p;
        s->smem_cap = cap;
    }
    if (block.x != s->shape.x || block.y != s->shape.y || block.z != s->shape.z)
        setup_shape(s, block);
    s->smem_bytes = smem;
    s->fn = fn;
    s->ctx = ctx;
    s->in_launch = true;
    pnsim_tls_t saved = pnsim_tls;
    pnsim_tls.block_dim = uint3{block.x, block.y, block.z};
    pnsim_tls.grid_dim = uint3{grid.x, grid.y, grid.z};
    pnsim_tls.smem = smem ? s->smem : nullptr;
    bool ok = true;
    for (unsigned z = 0; ok && z < grid.z; z++)
        for (unsigned y = 0; ok && y < grid.y; y++)
            for (unsigned x = 0; ok && x < grid.x; x++) {
                pnsim_tls.block_idx = uint3{x, y, z};
                ok = run_block(s);
            }
    if (!ok) fprintf(stderr, "pnsim: kernel launch failed: %s\n", s->msg);
    s->cur = nullptr;
    s->in_launch = false;
    pnsim_tls = saved;
    return ok ? cudaSuccess : cudaErrorLaunchFailure;
}

/* A launch about to run: its configuration, its body and the device it runs on. */
struct Launch {
    dim3 grid, block;
    size_t smem;
    const pnsim_body_ops *ops;
    void *body;
    int device;
};

/* Runs launch l's grid once the pointers its kernel parameters carry passed the check
 * (ops->check): run_grid's result, or the check's cudaErrorIllegalAddress. */
static cudaError_t run_launch(const Launch *l)
{
    if (cudaError_t e = l->ops->check(l->body, l->device)) return e;
    return run_grid(l->grid, l->block, l->smem, l->ops->run, l->body);
}

void pnsim_launch_raw(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const void *kernel,
                      const pnsim_body_ops *ops, void *ctx)
{
    uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
    if (block.x < 1 || block.y < 1 || block.z < 1 || block.x > 1024 || block.y > 1024 ||
        block.z > 64 || nthreads > 1024 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        /* CUDA 13 on an H100 answers cudaErrorInvalidValue here (older runtimes said
         * cudaErrorInvalidConfiguration): the simulator follows the hardware it mirrors */
        pnsim_record_error(cudaErrorInvalidValue);
        return;
    }
    size_t limit = kernel ? pnsim_kernel_smem_limit(kernel) : pnsim_smem_optin();
    if (smem > limit) {
        pnsim_record_error(cudaErrorInvalidValue);
        return;
    }
    if (!pnsim_stream_here(stream)) { /* dead, or another device's */
        pnsim_record_error(cudaErrorInvalidResourceHandle);
        return;
    }
    pnsim_use_context();
    if (sched_get()->in_launch) {
        fprintf(stderr, "pnsim: launch from inside a kernel (dynamic parallelism) is not "
                        "supported\n");
        pnsim_record_error(cudaErrorNotSupported);
        return;
    }
    /* the device the stream belongs to: the current one (pnsim_stream_here) */
    Launch now{grid, block, smem, ops, ctx, pnsim_current_device()};
    if (!pnsim_async() && !pnsim_capturing(stream)) {
        pnsim_record_error(run_launch(&now));
        return;
    }
    Launch *l = new Launch(now);
    l->body = ops->clone(ctx);
    pnsim_submit(
        stream, [](void *p) { return run_launch((const Launch *)p); },
        [](void *p) {
            Launch *q = (Launch *)p;
            q->ops->drop(q->body);
            delete q;
        },
        l);
}
