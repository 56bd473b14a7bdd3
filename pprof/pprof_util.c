/*
 * pprof_util.c - the pprof module's plumbing: error texts, OS seams, the
 * containers every table is made of (growable vector, chunk pool, hash
 * index), hashing, a malloc-free sort, and EINTR-safe file helpers.
 *
 * Nothing here calls malloc or stdio: the agent runs this code on its own
 * thread inside arbitrary programs, so all memory comes from the
 * map_allocator_t handed in, and I/O goes through open/read/write.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>   /* rename() only: nothing here uses FILE or printf */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pprof/pprof_internal.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

const char *pprof_strerror(pprof_err_t err)
{
    switch (err) {
    case PPROF_OK: return "ok";
    case PPROF_ERR_NOMEM: return "out of memory";
    case PPROF_ERR_INVALID: return "invalid argument";
    case PPROF_ERR_STATE: return "call out of order";
    case PPROF_ERR_LIMIT: return "too many entries";
    case PPROF_ERR_NOSPACE: return "no space left on device";
    case PPROF_ERR_PERM: return "permission denied";
    case PPROF_ERR_NOENT: return "no such directory";
    case PPROF_ERR_IO: return "input/output error";
    case PPROF_ERR_PROC: return "cannot read /proc/self/maps";
    case PPROF_ERR_ZLIB: return "zlib error";
    case PPROF_ERR_DECODE: return "not a decodable profile";
    case PPROF_ERR_MALFORMED: return "malformed profile";
    }
    return "unknown error";
}

pprof_err_t pp_errno_to_err(int err)
{
    switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return PPROF_ERR_NOSPACE;
    case EACCES:
    case EPERM:
    case EROFS:
        return PPROF_ERR_PERM;
    case ENOENT:
    case ENOTDIR:
        return PPROF_ERR_NOENT;
    case ENOMEM:
        return PPROF_ERR_NOMEM;
    default:
        return PPROF_ERR_IO;
    }
}

/* ------------------------------------------------------------------------ */
/* Seams                                                                    */
/* ------------------------------------------------------------------------ */

static pprof_fd_hooks_t fd_hooks;   /* NULL members: open(2), close(2) */

void pprof_set_fd_hooks(const pprof_fd_hooks_t *hooks)
{
    fd_hooks = *hooks;
}

static int sys_open(const char *path, int flags, mode_t mode)
{
    if (fd_hooks.open && !(flags & O_CREAT)) return fd_hooks.open(path, flags);
    return open(path, flags, mode);
}

void pp_close(int fd)
{
    if (fd < 0) return;
    if (fd_hooks.close) fd_hooks.close(fd);
    else close(fd);
}

int (*PP_SEAM pp_sys_open)(const char *, int, mode_t) = sys_open;
ssize_t (*PP_SEAM pp_sys_write)(int, const void *, size_t) = write;
int (*PP_SEAM pp_sys_fsync)(int) = fsync;
int (*PP_SEAM pp_sys_rename)(const char *, const char *) = rename;

int pp_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = pp_sys_write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno ? errno : EIO;
        }
        if (w == 0) return ENOSPC;   /* no progress: treat as a full device */
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

bool pp_fd_open(pp_fd_t *f, const char *path, int flags)
{
    f->fd = pp_sys_open(path, flags | O_CLOEXEC, 0);
    if (f->fd < 0) return false;
    struct stat st;
    if (fstat(f->fd, &st) != 0) {
        int e = errno;
        pp_close(f->fd);
        f->fd = -1;
        errno = e;
        return false;
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    return true;
}

bool pp_fd_ours(const pp_fd_t *f)
{
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) return false;
    int fl = fcntl(f->fd, F_GETFD);
    return st.st_dev == f->dev && st.st_ino == f->ino && fl >= 0 && (fl & FD_CLOEXEC);
}

void pp_fd_close(pp_fd_t *f)
{
    /* The hooks' close makes its own check (and forgets a number the
     * program took); plain close(2) only after ours. */
    if (fd_hooks.close || pp_fd_ours(f)) pp_close(f->fd);
    f->fd = -1;
}

pprof_err_t pp_read_file(const map_allocator_t *a, const char *path,
                         char **out, size_t *len)
{
    pp_fd_t f;
    if (!pp_fd_open(&f, path, O_RDONLY)) return pp_errno_to_err(errno);
    size_t cap = 16384, n = 0;
    char *buf = a->alloc(a->ctx, cap);
    if (!buf) {
        pp_fd_close(&f);
        return PPROF_ERR_NOMEM;
    }
    for (;;) {
        if (cap - n < 4096 + 1) {
            char *nb = a->alloc(a->ctx, cap * 2);
            if (!nb) {
                a->free(a->ctx, buf);
                pp_fd_close(&f);
                return PPROF_ERR_NOMEM;
            }
            memcpy(nb, buf, n);
            a->free(a->ctx, buf);
            buf = nb;
            cap *= 2;
        }
        ssize_t r = pp_fd_ours(&f) ? read(f.fd, buf + n, cap - n - 1) : (errno = EBADF, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            a->free(a->ctx, buf);
            pp_fd_close(&f);
            return pp_errno_to_err(e);
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    pp_fd_close(&f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return PPROF_OK;
}

size_t pp_fmt_u64(char *out, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* ------------------------------------------------------------------------ */
/* Vector                                                                   */
/* ------------------------------------------------------------------------ */

void pp_vec_init(pp_vec_t *v, size_t elem)
{
    v->data = NULL;
    v->len = v->cap = 0;
    v->elem = elem;
}

pprof_err_t pp_vec_reserve(const map_allocator_t *a, pp_vec_t *v, size_t more)
{
    if (v->cap - v->len >= more) return PPROF_OK;
    size_t want = v->len + more;
    if (want < v->len) return PPROF_ERR_NOMEM;
    size_t ncap = v->cap ? v->cap : 16;
    while (ncap < want) {
        if (ncap > SIZE_MAX / 2) return PPROF_ERR_NOMEM;
        ncap *= 2;
    }
    if (ncap > SIZE_MAX / v->elem) return PPROF_ERR_NOMEM;
    void *nd = a->alloc(a->ctx, ncap * v->elem);
    if (!nd) return PPROF_ERR_NOMEM;
    if (v->data) {
        memcpy(nd, v->data, v->len * v->elem);
        a->free(a->ctx, v->data);
    }
    v->data = nd;
    v->cap = ncap;
    return PPROF_OK;
}

pprof_err_t pp_vec_push(const map_allocator_t *a, pp_vec_t *v,
                        const void *elem, void **slot)
{
    PP_TRY(pp_vec_reserve(a, v, 1));
    unsigned char *p = (unsigned char *)v->data + v->len * v->elem;
    if (elem)
        memcpy(p, elem, v->elem);
    else
        memset(p, 0, v->elem);
    v->len++;
    if (slot) *slot = p;
    return PPROF_OK;
}

void pp_vec_free(const map_allocator_t *a, pp_vec_t *v)
{
    if (v->data) a->free(a->ctx, v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Pool                                                                     */
/* ------------------------------------------------------------------------ */

struct pp_chunk_s {
    pp_chunk_t *next;
    size_t size;             /* payload bytes */
    size_t used;
    uint64_t data[];         /* 8-byte aligned payload */
};

void pp_pool_init(pp_pool_t *p, size_t chunk_size)
{
    p->head = NULL;
    p->bytes = 0;
    p->chunk_size = chunk_size;
}

void *pp_pool_alloc(const map_allocator_t *a, pp_pool_t *p, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (n == 0) n = 8;
    pp_chunk_t *c = p->head;
    if (!c || c->size - c->used < n) {
        /* A request bigger than a quarter chunk gets a chunk of its own,
         * placed behind the head so the head's free tail is not lost. */
        size_t size = n > p->chunk_size / 4 ? n : p->chunk_size;
        if (size > SIZE_MAX - sizeof(pp_chunk_t)) return NULL;
        pp_chunk_t *nc = a->alloc(a->ctx, sizeof(pp_chunk_t) + size);
        if (!nc) return NULL;
        nc->size = size;
        nc->used = 0;
        p->bytes += sizeof(pp_chunk_t) + size;
        if (size != p->chunk_size && c) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            p->head = nc;
        }
        c = nc;
    }
    void *r = (unsigned char *)c->data + c->used;
    c->used += n;
    return r;
}

void pp_pool_free(const map_allocator_t *a, pp_pool_t *p)
{
    pp_chunk_t *c = p->head;
    while (c) {
        pp_chunk_t *next = c->next;
        a->free(a->ctx, c);
        c = next;
    }
    p->head = NULL;
    p->bytes = 0;
}

/* ------------------------------------------------------------------------ */
/* Hash index                                                               */
/* ------------------------------------------------------------------------ */

uint32_t pp_index_find(const pp_index_t *ix, uint32_t hash, pp_index_eq eq,
                       const void *ctx, const void *key)
{
    if (!ix->slots) return UINT32_MAX;
    size_t i = hash & ix->mask;
    for (;;) {
        uint64_t s = ix->slots[i];
        if (s == 0) return UINT32_MAX;
        if ((uint32_t)(s >> 32) == hash) {
            uint32_t idx = (uint32_t)s - 1;
            if (eq(ctx, idx, key)) return idx;
        }
        i = (i + 1) & ix->mask;
    }
}

static void index_put(uint64_t *slots, size_t mask, uint64_t s)
{
    size_t i = (uint32_t)(s >> 32) & mask;
    while (slots[i]) i = (i + 1) & mask;
    slots[i] = s;
}

pprof_err_t pp_index_reserve(const map_allocator_t *a, pp_index_t *ix,
                             size_t more)
{
    size_t cap = ix->slots ? ix->mask + 1 : 0;
    size_t want = ix->n + more;
    if (want < ix->n || want > SIZE_MAX / 4) return PPROF_ERR_NOMEM;
    if (cap && want * 2 <= cap) return PPROF_OK;
    size_t ncap = cap ? cap : 64;
    while (want * 2 > ncap) ncap *= 2;
    uint64_t *ns = a->alloc(a->ctx, ncap * sizeof(uint64_t));
    if (!ns) return PPROF_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++)
        if (ix->slots[i]) index_put(ns, ncap - 1, ix->slots[i]);
    if (ix->slots) a->free(a->ctx, ix->slots);
    ix->slots = ns;
    ix->mask = ncap - 1;
    return PPROF_OK;
}

pprof_err_t pp_index_insert(const map_allocator_t *a, pp_index_t *ix,
                            uint32_t hash, uint32_t idx)
{
    PP_TRY(pp_index_reserve(a, ix, 1));
    index_put(ix->slots, ix->mask, ((uint64_t)hash << 32) | ((uint64_t)idx + 1));
    ix->n++;
    return PPROF_OK;
}

void pp_index_free(const map_allocator_t *a, pp_index_t *ix)
{
    if (ix->slots) a->free(a->ctx, ix->slots);
    ix->slots = NULL;
    ix->mask = ix->n = 0;
}

/* ------------------------------------------------------------------------ */
/* Hashing and sorting                                                      */
/* ------------------------------------------------------------------------ */

/* pp_hash_bytes: FNV-1a over 8-byte words, finished by a 64-bit mixer. */
uint64_t pp_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x100000001b3ull;
    return pp_mix64(h);
}

static void swap_bytes(unsigned char *x, unsigned char *y, size_t size)
{
    while (size--) {
        unsigned char t = *x;
        *x++ = *y;
        *y++ = t;
    }
}

static void sift_down(unsigned char *base, size_t root, size_t n, size_t size,
                      int (*cmp)(const void *, const void *))
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && cmp(base + child * size, base + (child + 1) * size) < 0)
            child++;
        if (cmp(base + root * size, base + child * size) >= 0) return;
        swap_bytes(base + root * size, base + child * size, size);
        root = child;
    }
}

void pp_heapsort(void *vbase, size_t n, size_t size,
                 int (*cmp)(const void *, const void *))
{
    unsigned char *base = vbase;
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) sift_down(base, i, n, size, cmp);
    for (size_t end = n - 1; end > 0; end--) {
        swap_bytes(base, base + end * size, size);
        sift_down(base, 0, end, size, cmp);
    }
}
