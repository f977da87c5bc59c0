/* ring.c — the ring backend (distributed.h's table) over TCP sockets, for two kinds of launch:
 * torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; Slurm's SLURM_PROCID and
 * SLURM_NTASKS stand for the first two; MLX's NCCL launch says the same with MLX_RANK,
 * MLX_WORLD_SIZE, NCCL_HOST_IP and NCCL_PORT), where rank 0 listens on the port, learns every
 * rank's address and hands out the table; or MLX's (MLX_RANK and MLX_HOSTFILE, a JSON list
 * with one list of "ip:port" strings per rank: each rank listens on its first address). Then
 * every pair of processes connects once (a full mesh).
 * all_reduce, all_gather and sum_scatter are ring algorithms (reduce-scatter, then
 * all-gather: each step sends one chunk to the next rank while receiving one from the
 * previous, through poll); send / recv use the pair's socket, each message led by its size. */
#include "distributed/distributed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC 0x474e495245544e50ull /* "PNTERING": a peer of this backend */
#define MAX_WORLD 4096
#define MAX_HOSTFILE (1 << 20) /* bytes */

/* A communicator: its members' global ranks, in rank order, and this process's rank in it. */
typedef struct {
    int rank, size;
    int *members;
} ring_comm;

static struct {
    bool ready;
    int rank, size;
    int *fd; /* fd[r]: the socket to global rank r (-1: this process) */
    ring_comm world;
} ring;
/* One collective or message at a time: they share the sockets. */
static pthread_mutex_t ring_mutex = PTHREAD_MUTEX_INITIALIZER;

/* ───────────────────────────── environment ───────────────────────────── */

/* The launcher's variables: values and the names they came from; hostfile set means MLX's
 * hostfile launch (rank from MLX_RANK), else rank 0's address (torchrun's form). */
typedef struct {
    const char *rank, *size, *addr, *port, *rank_name, *size_name, *addr_name, *port_name, *hostfile;
} launch_env;

static launch_env read_env(void)
{
    const char *hostfile = getenv("MLX_HOSTFILE");
    if (hostfile && *hostfile)
        return (launch_env){getenv("MLX_RANK"), .rank_name = "MLX_RANK", .hostfile = hostfile};
    launch_env e = {getenv("MLX_RANK"), getenv("MLX_WORLD_SIZE"), getenv("NCCL_HOST_IP"), getenv("NCCL_PORT"),
                    "MLX_RANK", "MLX_WORLD_SIZE", "NCCL_HOST_IP", "NCCL_PORT", NULL};
    if (e.rank && e.size && e.addr && e.port) return e; /* mlx.launch --backend nccl */
    e = (launch_env){getenv("RANK"), getenv("WORLD_SIZE"), getenv("MASTER_ADDR"), getenv("MASTER_PORT"),
                     "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", NULL};
    if (!e.rank || !e.size)
        e.rank = getenv("SLURM_PROCID"), e.size = getenv("SLURM_NTASKS"),
        e.rank_name = "SLURM_PROCID", e.size_name = "SLURM_NTASKS";
    return e;
}

static bool available(void) { return true; }

static bool launched(void)
{
    launch_env e = read_env();
    return e.hostfile ? e.rank != NULL : e.rank && e.size && e.addr && e.port;
}

/* A decimal integer in [lo, hi] from variable name's value s; -1 with an error otherwise. */
static int env_int(const char *name, const char *s, long lo, long hi, long *v)
{
    char *end = NULL;
    errno = 0;
    long x = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || x < lo || x > hi)
        return pn_set_error(PN_ERR_BACKEND, "[distributed] Couldn't initialize the ring backend: "
                            "%s=%s is not an integer in [%ld, %ld].", name, s ? s : "(unset)", lo, hi);
    *v = x;
    return 0;
}

/* The bootstrap's time limit in seconds (PONTE_DIST_TIMEOUT, default 300). */
static double timeout_s(void)
{
    const char *s = getenv("PONTE_DIST_TIMEOUT");
    double t = s ? atof(s) : 0;
    return t > 0 ? t : 300;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ───────────────────────────── sockets ───────────────────────────── */

static int io_fail(const char *what, int err)
{
    return pn_set_error(PN_ERR_BACKEND, "[ring] %s failed: %s.", what, strerror(err));
}

/* Sends sn bytes of sb on sfd while receiving rn bytes into rb from rfd (either may be 0;
 * sfd == rfd allowed), both to the end, so that a ring step cannot deadlock on full socket
 * buffers. A peer that closes its end is an error. 0 or -1. */
static int exchange(int sfd, const void *sb, size_t sn, int rfd, void *rb, size_t rn, const char *what)
{
    const char *s = sb;
    char *r = rb;
    while (sn || rn) {
        struct pollfd p[2];
        int np = 0, si = -1, ri = -1;
        if (sn) p[np] = (struct pollfd){.fd = sfd, .events = POLLOUT}, si = np++;
        if (rn) p[np] = (struct pollfd){.fd = rfd, .events = POLLIN}, ri = np++;
        if (poll(p, (nfds_t)np, -1) < 0) {
            if (errno == EINTR) continue;
            return io_fail(what, errno);
        }
        if (si >= 0 && p[si].revents) {
            ssize_t w = send(sfd, s, sn, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return io_fail(what, errno);
            if (w > 0) s += w, sn -= (size_t)w;
        }
        if (ri >= 0 && p[ri].revents) {
            ssize_t g = recv(rfd, r, rn, MSG_DONTWAIT);
            if (g == 0)
                return pn_set_error(PN_ERR_BACKEND, "[ring] %s failed: a peer process closed its "
                                    "connection (did it exit or fail?).", what);
            if (g < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return io_fail(what, errno);
            if (g > 0) r += g, rn -= (size_t)g;
        }
    }
    return 0;
}

static int send_all(int fd, const void *b, size_t n, const char *what) { return exchange(fd, b, n, -1, NULL, 0, what); }
static int recv_all(int fd, void *b, size_t n, const char *what) { return exchange(-1, NULL, 0, fd, b, n, what); }

static void tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* A socket listening on port (0: any free one) of every interface; its port to *port. */
static int listen_on(int port, int backlog, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return io_fail("socket", errno);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, backlog) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        int err = errno;
        close(fd);
        return pn_set_error(PN_ERR_BACKEND, "[ring] Listening on port %d failed: %s.", port, strerror(err));
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

/* A connection to addr (IPv4, numeric or a host name), retried until the deadline while
 * nobody listens there yet. The socket, or -1 with an error. */
static int connect_to(const struct sockaddr_in *addr, const char *name, double deadline)
{
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return io_fail("socket", errno);
        if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0) {
            tune(fd);
            return fd;
        }
        int err = errno;
        close(fd);
        if ((err != ECONNREFUSED && err != ETIMEDOUT && err != EINTR && err != ENETUNREACH &&
             err != EHOSTUNREACH) || now_s() > deadline)
            return pn_set_error(PN_ERR_BACKEND, "[ring] Connecting to %s:%d failed: %s.", name,
                                ntohs(addr->sin_port), strerror(err));
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    }
}

/* The next connection on lfd before the deadline, or -1 with an error. */
static int accept_before(int lfd, double deadline, struct sockaddr_in *peer)
{
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0)
            return pn_set_error(PN_ERR_BACKEND, "[ring] Waiting for the other processes timed out "
                                "(PONTE_DIST_TIMEOUT=%g s): did every rank start?", timeout_s());
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int k = poll(&p, 1, (int)(left * 1000) + 1);
        if (k < 0 && errno != EINTR) return io_fail("poll", errno);
        if (k <= 0) continue;
        socklen_t len = sizeof *peer;
        int fd = accept(lfd, (struct sockaddr *)peer, &len);
        if (fd >= 0) {
            tune(fd);
            return fd;
        }
        if (errno != EINTR && errno != ECONNABORTED) return io_fail("accept", errno);
    }
}

/* ───────────────────────────── bootstrap ───────────────────────────── */

/* What a process sends first on each connection: the magic, its rank, the world size and
 * (to rank 0) the IPv4 address and port it listens on, in network order. */
typedef struct {
    uint64_t magic;
    int32_t rank, size;
    uint32_t ip;
    uint16_t port, pad;
} hello;

/* Reads a hello from fd and checks it; a connection that is not a peer's is closed and
 * refused (*fd = -1, 0 returned: the caller accepts again). -1 on an I/O error. */
static int read_hello(int *fd, hello *h, int size)
{
    if (recv_all(*fd, h, sizeof *h, "Reading a peer's greeting")) {
        pn_clear_error(); /* a stranger that closed: wait for the next connection */
        close(*fd);
        *fd = -1;
        return 0;
    }
    if (h->magic != HELLO_MAGIC || h->rank < 0 || h->rank >= size || h->size != size) {
        if (h->magic == HELLO_MAGIC && h->size != size) {
            close(*fd);
            return pn_set_error(PN_ERR_BACKEND, "[ring] Rank %d says WORLD_SIZE=%d, this process "
                                "has %d.", (int)h->rank, (int)h->size, size);
        }
        close(*fd);
        *fd = -1;
    }
    return 0;
}

/* Rank 0: accepts every other rank on MASTER_PORT and sends each the table of addresses. */
static int bootstrap_root(int port, int size, uint32_t *ips, uint16_t *ports, double deadline)
{
    int bound = 0, lfd = listen_on(port, size, &bound), rc = lfd < 0 ? -1 : 0;
    for (int got = 1; rc == 0 && got < size;) {
        struct sockaddr_in peer;
        int fd = accept_before(lfd, deadline, &peer);
        hello h;
        if (fd < 0 || read_hello(&fd, &h, size)) rc = -1;
        else if (fd >= 0 && ring.fd[h.rank] >= 0) {
            close(fd);
            rc = pn_set_error(PN_ERR_BACKEND, "[ring] Two processes claim RANK=%d.", (int)h.rank);
        } else if (fd >= 0) {
            ring.fd[h.rank] = fd;
            ips[h.rank] = h.ip ? h.ip : peer.sin_addr.s_addr;
            ports[h.rank] = h.port;
            got++;
        }
    }
    if (lfd >= 0) close(lfd);
    for (int r = 1; rc == 0 && r < size; r++)
        rc = send_all(ring.fd[r], ips, (size_t)size * sizeof *ips, "Sending the address table") ||
             send_all(ring.fd[r], ports, (size_t)size * sizeof *ports, "Sending the address table");
    return rc ? -1 : 0;
}

/* The IPv4 address of host (numeric or a name) with port; what names its source in an
 * error. 0 or -1 with an error. */
static int resolve_host(const char *host, int port, const char *what, struct sockaddr_in *out)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e || !res)
        return pn_set_error(PN_ERR_BACKEND, "[ring] %s: cannot resolve '%s' as an IPv4 address: %s.",
                            what, host, gai_strerror(e));
    *out = *(struct sockaddr_in *)res->ai_addr;
    out->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

/* The mesh from this rank's side, lfd listening on its address: connects to the ranks in
 * [first, rank) (greeting each with its rank) and accepts every rank above it. */
static int connect_mesh(int rank, int size, int first, int lfd, const uint32_t *ips,
                        const uint16_t *ports, double deadline)
{
    int rc = 0;
    for (int r = first; rc == 0 && r < rank; r++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(ports[r]), .sin_addr.s_addr = ips[r]};
        char name[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &a.sin_addr, name, sizeof name);
        hello h = {HELLO_MAGIC, rank, size, 0, 0, 0};
        if ((ring.fd[r] = connect_to(&a, name, deadline)) < 0) rc = -1;
        else rc = send_all(ring.fd[r], &h, sizeof h, "Greeting a peer");
    }
    for (int got = rank + 1; rc == 0 && got < size;) {
        struct sockaddr_in peer;
        int fd = accept_before(lfd, deadline, &peer);
        hello h;
        if (fd < 0 || read_hello(&fd, &h, size)) rc = -1;
        else if (fd >= 0 && (h.rank <= rank || ring.fd[h.rank] >= 0)) {
            close(fd);
            rc = pn_set_error(PN_ERR_BACKEND, "[ring] Unexpected connection from rank %d.", (int)h.rank);
        } else if (fd >= 0) {
            ring.fd[h.rank] = fd;
            got++;
        }
    }
    return rc ? -1 : 0;
}

/* torchrun's launch, every rank but 0: greets rank 0 with its listening address, receives the
 * table, then joins the mesh of the ranks above 0. */
static int bootstrap_peer(int rank, int size, const char *host, const char *host_name, int port,
                          uint32_t *ips, uint16_t *ports, double deadline)
{
    struct sockaddr_in root;
    int bound = 0, lfd = -1, rc = resolve_host(host, port, host_name, &root);
    if (rc == 0 && (lfd = listen_on(0, size, &bound)) < 0) rc = -1;
    if (rc == 0 && (ring.fd[0] = connect_to(&root, host, deadline)) < 0) rc = -1;
    if (rc == 0) {
        struct sockaddr_in me; /* the address that reaches rank 0 is the one the others use */
        socklen_t len = sizeof me;
        getsockname(ring.fd[0], (struct sockaddr *)&me, &len);
        hello h = {HELLO_MAGIC, rank, size, me.sin_addr.s_addr, (uint16_t)bound, 0};
        rc = send_all(ring.fd[0], &h, sizeof h, "Greeting rank 0") ||
             recv_all(ring.fd[0], ips, (size_t)size * sizeof *ips, "Receiving the address table") ||
             recv_all(ring.fd[0], ports, (size_t)size * sizeof *ports, "Receiving the address table");
    }
    if (rc == 0) rc = connect_mesh(rank, size, 1, lfd, ips, ports, deadline);
    if (lfd >= 0) close(lfd);
    return rc ? -1 : 0;
}

/* ───────────────────────────── MLX's hostfile ───────────────────────────── */

/* A hostfile being parsed: the text, the position, the file's path for errors. */
typedef struct {
    const char *s, *path;
    size_t i, n;
} json_cursor;

static int hostfile_error(const json_cursor *j, const char *what)
{
    return pn_set_error(PN_ERR_BACKEND, "[ring] MLX_HOSTFILE=%s: %s at byte %zu (expected a JSON list "
                        "with one list of \"ip:port\" strings per rank).", j->path, what, j->i);
}

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The next non-blank character, consumed when it is c; whether it was. */
static bool json_take(json_cursor *j, char c)
{
    while (j->i < j->n && is_blank(j->s[j->i])) j->i++;
    if (j->i < j->n && j->s[j->i] == c) {
        j->i++;
        return true;
    }
    return false;
}

/* A string without escapes into out (cap bytes with its NUL). 0 or -1 with an error. */
static int json_string(json_cursor *j, char *out, size_t cap)
{
    if (!json_take(j, '"')) return hostfile_error(j, "a string is missing");
    size_t k = 0;
    while (j->i < j->n && j->s[j->i] != '"') {
        char c = j->s[j->i++];
        if (c == '\\' || (unsigned char)c < 32 || k + 1 >= cap) return hostfile_error(j, "an unusable address string");
        out[k++] = c;
    }
    if (j->i >= j->n) return hostfile_error(j, "an unterminated string");
    j->i++;
    out[k] = 0;
    return 0;
}

/* "host:port" to an IPv4 address and port. */
static int parse_address(json_cursor *j, const char *text, uint32_t *ip, uint16_t *port)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    long p = 0;
    char *end = NULL;
    if (colon) p = strtol(colon + 1, &end, 10);
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof host || !end || *end || end == colon + 1 ||
        p < 1 || p > 65535)
        return hostfile_error(j, "an address is not \"ip:port\"");
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    struct sockaddr_in a = {0};
    if (resolve_host(host, (int)p, "MLX_HOSTFILE", &a)) return -1;
    *ip = a.sin_addr.s_addr, *port = (uint16_t)p;
    return 0;
}

/* Reads the hostfile: the world size and each rank's first address (*ips, *ports allocated,
 * the caller frees them). 0 or -1 with an error. */
static int read_hostfile(const char *path, int *size, uint32_t **ips, uint16_t **ports)
{
    FILE *f = fopen(path, "rb");
    if (!f) return pn_set_error(PN_ERR_BACKEND, "[ring] MLX_HOSTFILE=%s: %s.", path, strerror(errno));
    char *text = malloc(MAX_HOSTFILE + 1);
    size_t n = text ? fread(text, 1, MAX_HOSTFILE + 1, f) : 0;
    fclose(f);
    json_cursor j = {text, path, 0, n};
    int rc = !text ? pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ring] Out of memory.")
           : n > MAX_HOSTFILE ? hostfile_error(&j, "the file is larger than 1 MiB") : 0;
    *size = 0, *ips = NULL, *ports = NULL;
    if (rc == 0 && !json_take(&j, '[')) rc = hostfile_error(&j, "'[' is missing");
    bool more = rc == 0 && !json_take(&j, ']');
    while (rc == 0 && more) {
        if (*size == MAX_WORLD) {
            rc = hostfile_error(&j, "more than 4096 ranks");
            break;
        }
        uint32_t *ni = realloc(*ips, (size_t)(*size + 1) * sizeof *ni);
        if (ni) *ips = ni;
        uint16_t *np = ni ? realloc(*ports, (size_t)(*size + 1) * sizeof *np) : NULL;
        if (np) *ports = np;
        if (!ni || !np) {
            rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ring] Out of memory.");
            break;
        }
        if (!json_take(&j, '[')) rc = hostfile_error(&j, "a rank's list is missing");
        for (int k = 0; rc == 0; k++) { /* the rank's addresses: the first one is used */
            char addr[300];
            rc = json_string(&j, addr, sizeof addr);
            if (rc == 0 && k == 0) rc = parse_address(&j, addr, &(*ips)[*size], &(*ports)[*size]);
            if (rc == 0 && json_take(&j, ']')) break;
            if (rc == 0 && !json_take(&j, ',')) rc = hostfile_error(&j, "',' or ']' is missing");
        }
        if (rc == 0) ++*size;
        if (rc == 0 && json_take(&j, ']')) more = false;
        else if (rc == 0 && !json_take(&j, ',')) rc = hostfile_error(&j, "',' or ']' is missing");
    }
    while (rc == 0 && j.i < j.n && is_blank(j.s[j.i])) j.i++;
    if (rc == 0 && j.i != j.n) rc = hostfile_error(&j, "text after the list");
    if (rc == 0 && *size == 0) rc = hostfile_error(&j, "no ranks");
    free(text);
    if (rc) free(*ips), free(*ports), *ips = NULL, *ports = NULL;
    return rc ? -1 : 0;
}

/* The launch's rank, world size and (hostfile) address table: ips / ports allocated for size
 * ranks. 0 or -1 with an error. */
static int read_launch(const launch_env *e, long *rank, long *size, long *port, uint32_t **ips,
                       uint16_t **ports)
{
    *ips = NULL, *ports = NULL;
    if (!launched())
        return pn_set_error(PN_ERR_BACKEND, "[distributed] Couldn't initialize the ring backend: set "
                            "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (as torchrun does), "
                            "MLX_RANK, MLX_WORLD_SIZE, NCCL_HOST_IP and NCCL_PORT (as mlx.launch "
                            "--backend nccl does), or "
                            "MLX_RANK and MLX_HOSTFILE (as mlx.launch does).");
    if (e->hostfile) {
        int n = 0;
        if (read_hostfile(e->hostfile, &n, ips, ports)) return -1;
        *size = n;
    } else if (env_int(e->size_name, e->size, 1, MAX_WORLD, size) ||
               env_int(e->port_name, e->port, 1, 65535, port)) {
        return -1;
    }
    int rc = env_int(e->rank_name, e->rank, 0, *size - 1, rank);
    if (rc == 0 && !*ips) {
        *ips = calloc((size_t)*size, sizeof **ips);
        *ports = calloc((size_t)*size, sizeof **ports);
        if (!*ips || !*ports) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ring] Out of memory.");
    }
    if (rc) free(*ips), free(*ports), *ips = NULL, *ports = NULL;
    return rc;
}

/* Reads the environment and connects the mesh, once per process. The world communicator, or
 * NULL with an error (a failed start may be retried). */
static void *init(void)
{
    pthread_mutex_lock(&ring_mutex);
    void *out = ring.ready ? &ring.world : NULL;
    if (!ring.ready) {
        launch_env e = read_env();
        long rank = 0, size = 0, port = 0;
        uint32_t *ips = NULL;
        uint16_t *ports = NULL;
        int rc = read_launch(&e, &rank, &size, &port, &ips, &ports);
        int *fd = rc == 0 ? malloc((size_t)size * sizeof *fd) : NULL;
        int *members = rc == 0 ? malloc((size_t)size * sizeof *members) : NULL;
        if (rc == 0 && (!fd || !members)) rc = pn_set_error(PN_ERR_OUT_OF_MEMORY, "[ring] Out of memory.");
        if (rc == 0) {
            for (int r = 0; r < size; r++) fd[r] = -1, members[r] = r;
            ring.fd = fd, ring.rank = (int)rank, ring.size = (int)size;
            double deadline = now_s() + timeout_s();
            int bound, lfd;
            if (size == 1) {
                rc = 0;
            } else if (e.hostfile) { /* listen on this rank's port of the table */
                lfd = listen_on(ports[rank], (int)size, &bound);
                rc = lfd < 0 ? -1 : connect_mesh((int)rank, (int)size, 0, lfd, ips, ports, deadline);
                if (lfd >= 0) close(lfd);
            } else {
                rc = rank == 0 ? bootstrap_root((int)port, (int)size, ips, ports, deadline)
                               : bootstrap_peer((int)rank, (int)size, e.addr, e.addr_name, (int)port, ips,
                                                ports, deadline);
            }
        }
        if (rc == 0) {
            ring.world = (ring_comm){(int)rank, (int)size, members};
            ring.ready = true;
            out = &ring.world;
        } else {
            for (int r = 0; fd && r < size; r++)
                if (fd[r] >= 0) close(fd[r]);
            free(fd), free(members);
            ring.fd = NULL;
        }
        free(ips), free(ports);
    }
    pthread_mutex_unlock(&ring_mutex);
    return out;
}

/* ───────────────────────────── collectives ───────────────────────────── */

static int rank(void *comm) { return ((ring_comm *)comm)->rank; }
static int size(void *comm) { return ((ring_comm *)comm)->size; }

/* The socket to the member k places after this process (k may be negative). */
static int peer_fd(const ring_comm *c, int k)
{
    return ring.fd[c->members[((c->rank + k) % c->size + c->size) % c->size]];
}

/* Chunk k of n elements split into parts: blocks of `block` elements when block > 0, else
 * near-equal parts. Its first element and count. */
static void chunk(int64_t n, int parts, int64_t block, int k, int64_t *lo, int64_t *cnt)
{
    k = (k % parts + parts) % parts;
    if (block > 0) {
        *lo = k * block, *cnt = block;
    } else {
        *lo = n * k / parts;
        *cnt = n * (k + 1) / parts - *lo;
    }
}

/* Ring reduce-scatter over buf (n elements of dt in c->size chunks): afterwards this
 * process's chunk c->rank holds the reduction over every member. tmp holds a chunk. */
static int reduce_scatter_ring(const ring_comm *c, char *buf, int64_t n, int64_t block, pn_dtype dt,
                               pnD_reduce op, char *tmp)
{
    size_t es = pn_dtype_size(dt);
    for (int s = 0; s < c->size - 1; s++) {
        int64_t slo, scnt, rlo, rcnt;
        chunk(n, c->size, block, c->rank - s - 1, &slo, &scnt);
        chunk(n, c->size, block, c->rank - s - 2, &rlo, &rcnt);
        if (exchange(peer_fd(c, 1), buf + slo * es, (size_t)scnt * es, peer_fd(c, -1), tmp,
                     (size_t)rcnt * es, "A ring reduction step"))
            return -1;
        pnD_combine(buf + rlo * es, tmp, rcnt, dt, op);
    }
    return 0;
}

/* Ring all-gather: every member's chunk (its own rank's) of buf arrives at every member. */
static int all_gather_ring(const ring_comm *c, char *buf, int64_t n, int64_t block, pn_dtype dt)
{
    size_t es = pn_dtype_size(dt);
    for (int s = 0; s < c->size - 1; s++) {
        int64_t slo, scnt, rlo, rcnt;
        chunk(n, c->size, block, c->rank - s, &slo, &scnt);
        chunk(n, c->size, block, c->rank - s - 1, &rlo, &rcnt);
        if (exchange(peer_fd(c, 1), buf + slo * es, (size_t)scnt * es, peer_fd(c, -1),
                     buf + rlo * es, (size_t)rcnt * es, "A ring gather step"))
            return -1;
    }
    return 0;
}

static int all_reduce_locked(ring_comm *c, const void *in, void *out, int64_t n, pn_dtype dt, pnD_reduce op)
{
    size_t es = pn_dtype_size(dt);
    if (in != out) memmove(out, in, (size_t)n * es);
    if (c->size == 1 || n == 0) return 0;
    char *tmp = malloc(((size_t)(n / c->size) + 1) * es);
    if (!tmp) return pn_set_error(PN_ERR_OUT_OF_MEMORY, "[all_reduce] Out of memory.");
    int rc = reduce_scatter_ring(c, out, n, 0, dt, op, tmp) || all_gather_ring(c, out, n, 0, dt);
    free(tmp);
    return rc ? -1 : 0;
}

static int all_reduce(void *comm, const void *in, void *out, int64_t n, pn_dtype dt, pnD_reduce op)
{
    pthread_mutex_lock(&ring_mutex);
    int rc = all_reduce_locked(comm, in, out, n, dt, op);
    pthread_mutex_unlock(&ring_mutex);
    return rc;
}

static int all_gather_locked(ring_comm *c, const void *in, void *out, int64_t n, pn_dtype dt)
{
    size_t es = pn_dtype_size(dt);
    memmove((char *)out + (size_t)c->rank * (size_t)n * es, in, (size_t)n * es);
    return n ? all_gather_ring(c, out, n * c->size, n, dt) : 0;
}

static int all_gather(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    pthread_mutex_lock(&ring_mutex);
    int rc = all_gather_locked(comm, in, out, n, dt);
    pthread_mutex_unlock(&ring_mutex);
    return rc;
}

static int reduce_scatter_sum(void *comm, const void *in, void *out, int64_t n, pn_dtype dt)
{
    ring_comm *c = comm;
    size_t es = pn_dtype_size(dt), bytes = (size_t)n * (size_t)c->size * es;
    char *work = malloc(bytes + 1), *tmp = malloc((size_t)n * es + 1);
    int rc = work && tmp ? 0 : pn_set_error(PN_ERR_OUT_OF_MEMORY, "[sum_scatter] Out of memory.");
    if (rc == 0) {
        memcpy(work, in, bytes);
        pthread_mutex_lock(&ring_mutex);
        rc = n ? reduce_scatter_ring(c, work, n * c->size, n, dt, PND_SUM, tmp) : 0;
        pthread_mutex_unlock(&ring_mutex);
    }
    if (rc == 0) memcpy(out, work + (size_t)c->rank * (size_t)n * es, (size_t)n * es);
    free(work), free(tmp);
    return rc ? -1 : 0;
}

/* Point-to-point: the message's byte count, then its bytes, on the pair's socket. */
static int send_msg(void *comm, const void *buf, int64_t n, pn_dtype dt, int dst)
{
    ring_comm *c = comm;
    if (dst == c->rank)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[send] A process cannot send to itself.");
    int64_t bytes = n * (int64_t)pn_dtype_size(dt);
    int fd = ring.fd[c->members[dst]];
    pthread_mutex_lock(&ring_mutex);
    int rc = send_all(fd, &bytes, sizeof bytes, "send") || send_all(fd, buf, (size_t)bytes, "send");
    pthread_mutex_unlock(&ring_mutex);
    return rc ? -1 : 0;
}

static int recv_msg(void *comm, void *buf, int64_t n, pn_dtype dt, int src)
{
    ring_comm *c = comm;
    if (src == c->rank)
        return pn_set_error(PN_ERR_INVALID_ARGUMENT, "[recv] A process cannot receive from itself.");
    int64_t want = n * (int64_t)pn_dtype_size(dt), bytes = 0;
    int fd = ring.fd[c->members[src]];
    pthread_mutex_lock(&ring_mutex);
    int rc = recv_all(fd, &bytes, sizeof bytes, "recv");
    if (rc == 0 && bytes == want) rc = recv_all(fd, buf, (size_t)bytes, "recv");
    else if (rc == 0) { /* drain the message so that the stream stays in step, then refuse */
        char scratch[4096];
        for (int64_t left = bytes; rc == 0 && left > 0; left -= (int64_t)sizeof scratch)
            rc = recv_all(fd, scratch, left < (int64_t)sizeof scratch ? (size_t)left : sizeof scratch, "recv");
        if (rc == 0)
            rc = pn_set_error(PN_ERR_INVALID_ARGUMENT,
                              "[recv] Expected %lld bytes from rank %d but %lld arrived (shapes or "
                              "dtypes differ between send and recv).", (long long)want, src, (long long)bytes);
    }
    pthread_mutex_unlock(&ring_mutex);
    return rc ? -1 : 0;
}

static int check_same(void *comm, const char *op, int64_t n, pn_dtype dt)
{
    int64_t v[4] = {n, -n, (int64_t)dt, -(int64_t)dt};
    if (all_reduce(comm, v, v, 4, PN_INT64, PND_MAX)) return -1;
    if (v[0] != -v[1] || v[2] != -v[3])
        return pn_set_error(PN_ERR_INVALID_ARGUMENT,
                            "[%s] The processes of the group passed arrays of different sizes or "
                            "dtypes (this rank: %lld elements of %s; sizes range %lld..%lld).",
                            op, (long long)n, pn_dtype_name(dt), (long long)-v[1], (long long)v[0]);
    return 0;
}

/* The members with this process's color, ordered by (key, rank): every member's (color, key)
 * gathered first. */
static void *split(void *comm, int color, int key)
{
    ring_comm *c = comm, *s = calloc(1, sizeof *s);
    int64_t mine[3] = {color, key, c->rank}, *all = malloc((size_t)c->size * sizeof mine);
    if (s) s->members = malloc((size_t)c->size * sizeof *s->members);
    if (!s || !all || !s->members) {
        if (s) free(s->members);
        free(s), free(all);
        return pnC_fail(PN_ERR_OUT_OF_MEMORY, "[split] Out of memory.");
    }
    if (all_gather(comm, mine, all, 3, PN_INT64)) {
        free(s->members), free(s), free(all);
        return NULL;
    }
    for (int r = 0; r < c->size; r++) { /* insertion by (key, rank) among the same color */
        if (all[3 * r] != color) continue;
        int j = s->size++;
        while (j > 0) {
            int64_t *p = &all[3 * s->members[j - 1]];
            if (p[1] < all[3 * r + 1] || (p[1] == all[3 * r + 1] && p[2] < r)) break;
            s->members[j] = s->members[j - 1];
            j--;
        }
        s->members[j] = r;
    }
    for (int j = 0; j < s->size; j++) {
        if (s->members[j] == c->rank) s->rank = j;
        s->members[j] = c->members[s->members[j]]; /* to global ranks */
    }
    free(all);
    return s;
}

static void comm_free(void *comm)
{
    ring_comm *c = comm;
    if (!c || c == &ring.world) return;
    free(c->members);
    free(c);
}

const pnD_backend pnD_ring = {
    .name = "ring",
    .available = available,
    .launched = launched,
    .init = init,
    .rank = rank,
    .size = size,
    .split = split,
    .all_reduce = all_reduce,
    .all_gather = all_gather,
    .reduce_scatter_sum = reduce_scatter_sum,
    .send = send_msg,
    .recv = recv_msg,
    .check_same = check_same,
    .free = comm_free,
};
