/*
 * agent_mix.c - an allocation-heavy program for the agent's wall-time
 * benchmark (tests/bench/agent_bench.py, part 3): it does little but
 * allocate, use and free memory, in the mix of sizes and lifetimes real C
 * programs make. Each round:
 *
 *   tree    a treap of 20000 nodes (48-byte nodes, each owning a name
 *           string of 8..72 bytes), looked up, then torn down;
 *   hash    a chained hash table: 20000 entries, each a 32-byte entry, a
 *           key string and a value of 16..256 bytes (1 in 64: 1..16 KiB);
 *           the bucket array doubles (calloc new, free old); half the
 *           entries are deleted and 5000 re-inserted, then all freed;
 *   vector  arrays of 4-, 8-, 24- and 64-byte elements grown to 20000
 *           elements by realloc (x1.5), then freed;
 *   text    40000 words of 4..31 bytes, each appended to a line that
 *           grows by one realloc per word; every 16 words the line is
 *           appended to a document whose capacity doubles, and freed;
 *   big     4 buffers of 64 KiB..2 MiB, partly written (some above glibc's
 *           mmap threshold).
 * Everything is deterministic (a fixed xorshift seed): the same run makes
 * the same calls in the same order. At the end it prints a checksum and the
 * number of allocation calls it made (malloc + calloc + realloc), so runs
 * with and without an agent are seen to do the same work.
 *
 * usage: agent_mix [--rounds R]   (default 12; the benchmark runs 60, about 1.5 s)
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t checksum;
static uint64_t alloc_calls;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) abort();
    alloc_calls++;
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) abort();
    alloc_calls++;
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) abort();
    alloc_calls++;
    return q;
}

static char *make_name(uint64_t v, size_t len)
{
    char *s = xmalloc(len + 1);
    for (size_t i = 0; i < len; i++) s[i] = (char)('a' + (v >> (i % 60)) % 26);
    s[len] = 0;
    return s;
}

/* ------------------------------------------------------------------------ */
/* tree: a treap                                                            */
/* ------------------------------------------------------------------------ */

typedef struct node_s {
    uint64_t key;
    uint64_t prio;
    struct node_s *left, *right;
    char *name;
    uint64_t hits;
} node_t;

static node_t *rotate_right(node_t *n)
{
    node_t *l = n->left;
    n->left = l->right;
    l->right = n;
    return l;
}

static node_t *rotate_left(node_t *n)
{
    node_t *r = n->right;
    n->right = r->left;
    r->left = n;
    return r;
}

static node_t *treap_insert(node_t *root, node_t *n)
{
    if (!root) return n;
    if (n->key < root->key) {
        root->left = treap_insert(root->left, n);
        if (root->left->prio > root->prio) root = rotate_right(root);
    } else {
        root->right = treap_insert(root->right, n);
        if (root->right->prio > root->prio) root = rotate_left(root);
    }
    return root;
}

static node_t *treap_find(node_t *root, uint64_t key)
{
    while (root && root->key != key) root = key < root->key ? root->left : root->right;
    return root;
}

static void treap_free(node_t *n)
{
    if (!n) return;
    treap_free(n->left);
    treap_free(n->right);
    checksum += n->hits + (unsigned char)n->name[0];
    free(n->name);
    free(n);
}

static void round_tree(void)
{
    enum { N = 20000 };
    node_t *root = NULL;
    uint64_t first = 0;
    for (int i = 0; i < N; i++) {
        node_t *n = xmalloc(sizeof *n);
        n->key = rnd() % 1000000;
        if (i == 0) first = n->key;
        n->prio = rnd();
        n->left = n->right = NULL;
        n->name = make_name(n->key, 8 + (size_t)(rnd() % 65));
        n->hits = 0;
        root = treap_insert(root, n);
    }
    for (int i = 0; i < N; i++) {
        node_t *f = treap_find(root, i & 1 ? first : rnd() % 1000000);
        if (f) f->hits++;
    }
    treap_free(root);
}

/* ------------------------------------------------------------------------ */
/* hash: chained table with doubling                                        */
/* ------------------------------------------------------------------------ */

typedef struct entry_s {
    struct entry_s *next;
    char *key;
    void *value;
    uint64_t hash;
} entry_t;

typedef struct table_s {
    entry_t **buckets;
    size_t nbuckets;
    size_t count;
} table_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

static void table_grow(table_t *t)
{
    size_t nb = t->nbuckets * 2;
    entry_t **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < t->nbuckets; i++) {
        entry_t *e = t->buckets[i];
        while (e) {
            entry_t *next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
}

static void table_put(table_t *t, uint64_t v)
{
    char *key = make_name(v, 6 + (size_t)(v % 40));
    uint64_t h = hash_str(key);
    size_t vsize = rnd() % 64 == 0 ? 1024 + (size_t)(rnd() % (15 * 1024)) : 16 + (size_t)(rnd() % 241);
    entry_t *e = xmalloc(sizeof *e);
    e->key = key;
    e->hash = h;
    e->value = xmalloc(vsize);
    memset(e->value, (int)(v & 0xff), vsize < 64 ? vsize : 64);
    e->next = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = e;
    if (++t->count > t->nbuckets) table_grow(t);
}

static void table_del(table_t *t, uint64_t v)
{
    char probe[64];
    size_t len = 6 + (size_t)(v % 40);
    for (size_t i = 0; i < len; i++) probe[i] = (char)('a' + (v >> (i % 60)) % 26);
    probe[len] = 0;
    uint64_t h = hash_str(probe);
    entry_t **pe = &t->buckets[h & (t->nbuckets - 1)];
    for (; *pe; pe = &(*pe)->next) {
        entry_t *e = *pe;
        if (e->hash == h && !strcmp(e->key, probe)) {
            *pe = e->next;
            checksum += *(unsigned char *)e->value;
            free(e->value);
            free(e->key);
            free(e);
            t->count--;
            return;
        }
    }
}

static void round_hash(void)
{
    enum { N = 20000 };
    table_t t = { xcalloc(16, sizeof(entry_t *)), 16, 0 };
    uint64_t *keys = xmalloc(N * sizeof *keys);
    for (int i = 0; i < N; i++) {
        keys[i] = rnd();
        table_put(&t, keys[i]);
    }
    for (int i = 0; i < N; i += 2) table_del(&t, keys[i]);
    for (int i = 0; i < N / 4; i++) table_put(&t, rnd());
    for (size_t i = 0; i < t.nbuckets; i++) {
        entry_t *e = t.buckets[i];
        while (e) {
            entry_t *next = e->next;
            checksum += e->hash & 0xff;
            free(e->value);
            free(e->key);
            free(e);
            e = next;
        }
    }
    free(t.buckets);
    free(keys);
}

/* ------------------------------------------------------------------------ */
/* vector, text, big                                                        */
/* ------------------------------------------------------------------------ */

static void round_vector(void)
{
    static const size_t elem[] = { 4, 8, 24, 64 };
    for (size_t k = 0; k < sizeof elem / sizeof elem[0]; k++) {
        unsigned char *v = NULL;
        size_t cap = 0, len = 0;
        for (int i = 0; i < 20000; i++) {
            if (len == cap) {
                cap = cap ? cap + cap / 2 : 4;
                v = xrealloc(v, cap * elem[k]);
            }
            v[len * elem[k]] = (unsigned char)i;
            len++;
        }
        checksum += v[(len / 2) * elem[k]];
        free(v);
    }
}

static void round_text(void)
{
    char *doc = NULL, *line = NULL;
    size_t doclen = 0, doccap = 0, linelen = 0;
    for (int i = 0; i < 40000; i++) {
        size_t len = 4 + (size_t)(rnd() % 28);
        char *w = make_name(rnd(), len);
        /* a line grown by one realloc per word (the naive way) */
        line = xrealloc(line, linelen + len + 2);
        memcpy(line + linelen, w, len);
        linelen += len;
        line[linelen++] = ' ';
        line[linelen] = 0;
        if (i % 16 == 15) {
            /* the document grows its capacity geometrically (a string builder) */
            if (doclen + linelen + 1 > doccap) {
                doccap = doccap ? doccap * 2 : 256;
                while (doccap < doclen + linelen + 1) doccap *= 2;
                doc = xrealloc(doc, doccap);
            }
            memcpy(doc + doclen, line, linelen + 1);
            doclen += linelen;
            free(line);
            line = NULL;
            linelen = 0;
        }
        checksum += (unsigned char)w[len - 1];
        free(w);
    }
    checksum += doclen;
    free(line);
    free(doc);
}

static void round_big(void)
{
    for (int i = 0; i < 4; i++) {
        size_t n = 64 * 1024 + (size_t)(rnd() % (2 * 1024 * 1024 - 64 * 1024));
        unsigned char *b = xmalloc(n);
        memset(b, i, n / 8);
        checksum += b[n / 16];
        free(b);
    }
}

int main(int argc, char **argv)
{
    long rounds = 12;
    if (argc == 3 && !strcmp(argv[1], "--rounds")) {
        rounds = strtol(argv[2], NULL, 10);
    } else if (argc != 1) {
        fprintf(stderr, "usage: agent_mix [--rounds R]\n");
        return 2;
    }
    for (long r = 0; r < rounds; r++) {
        round_tree();
        round_hash();
        round_vector();
        round_text();
        round_big();
    }
    printf("mix rounds=%ld alloc_calls=%" PRIu64 " checksum=%" PRIu64 "\n", rounds, alloc_calls,
           checksum);
    return 0;
}
