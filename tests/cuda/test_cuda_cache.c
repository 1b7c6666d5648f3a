/* tests/cuda/test_cuda_cache.c - the cuda backend's caching allocator
 * (plugins/cuda/cuda_cache.c) on the CPU, over a fake device: malloc with a
 * byte budget that says "out of memory" past it, and a record of every live
 * device block, so the suite sees each device call the cache makes.
 *
 * Proves: the size classes; reuse of a freed block only on the same
 * (device, stream) and class, with no device call; the statistics and their
 * peaks; an out-of-memory device answered by giving the cache back and
 * trying once more, and a clean failure (nothing held) when that is not
 * enough; exact (uncached) blocks; unknown and double frees refused; many
 * blocks (the hash table grows); device errors passed through; and that
 * destroy gives every block back. Runs everywhere: no CUDA in it.
 */
#include "test_util.h"

#include "cuda_cache.h"

/* ---- the fake device -------------------------------------------------------- */

#define FAKE_MAX 4096

typedef struct fake_dev {
    size_t budget;     /* bytes the device holds at most */
    size_t used;       /* bytes live on it */
    int fail_next;     /* the next malloc fails with this code (then 0) */
    int null_next;     /* the next malloc says OK and gives NULL */
    uint64_t mallocs, frees, ooms;
    int bad_frees;     /* frees of pointers it never gave (must stay 0) */
    void *live[FAKE_MAX];
    size_t live_size[FAKE_MAX];
    int32_t live_dev[FAKE_MAX];
    int n_live;
} fake_dev;

static int fake_malloc(void *user, int32_t device, size_t bytes, void **ptr) {
    fake_dev *f = user;
    *ptr = NULL;
    if (f->fail_next) {
        int rc = f->fail_next;
        f->fail_next = 0;
        return rc;
    }
    if (f->null_next) {
        f->null_next = 0;
        return CC_OK;
    }
    if (bytes > f->budget - f->used) {
        f->ooms++;
        return CC_E_OOM;
    }
    if (f->n_live == FAKE_MAX)
        return CC_E_DEVICE;
    void *p = malloc(16); /* a unique address; the size is only counted */
    if (p == NULL)
        return CC_E_DEVICE;
    f->live[f->n_live] = p;
    f->live_size[f->n_live] = bytes;
    f->live_dev[f->n_live] = device;
    f->n_live++;
    f->used += bytes;
    f->mallocs++;
    *ptr = p;
    return CC_OK;
}

static void fake_free(void *user, int32_t device, void *ptr) {
    fake_dev *f = user;
    for (int i = 0; i < f->n_live; i++) {
        if (f->live[i] == ptr && f->live_dev[i] == device) {
            f->used -= f->live_size[i];
            free(ptr);
            f->n_live--;
            f->live[i] = f->live[f->n_live];
            f->live_size[i] = f->live_size[f->n_live];
            f->live_dev[i] = f->live_dev[f->n_live];
            f->frees++;
            return;
        }
    }
    f->bad_frees++;
}

static const cc_ops fake_ops = {fake_malloc, fake_free};

static fake_dev *fake_new(size_t budget) {
    fake_dev *f = calloc(1, sizeof *f);
    if (f)
        f->budget = budget;
    return f;
}

#define MiB ((size_t)1 << 20)
#define S1 ((uintptr_t)0x1000)
#define S2 ((uintptr_t)0x2000)

/* ---- tests ------------------------------------------------------------------- */

static void test_round(void) {
    CU_ASSERT_EQUAL(cc_round(0), 512);
    CU_ASSERT_EQUAL(cc_round(1), 512);
    CU_ASSERT_EQUAL(cc_round(512), 512);
    CU_ASSERT_EQUAL(cc_round(513), 1024);
    CU_ASSERT_EQUAL(cc_round(1000), 1024);
    CU_ASSERT_EQUAL(cc_round(MiB - 1), MiB);
    CU_ASSERT_EQUAL(cc_round(MiB), MiB);
    CU_ASSERT_EQUAL(cc_round(MiB + 1), 2 * MiB);
    CU_ASSERT_EQUAL(cc_round(3 * MiB), 4 * MiB);
    CU_ASSERT_EQUAL(cc_round(4 * MiB), 4 * MiB);
    CU_ASSERT_EQUAL(cc_round(SIZE_MAX), 0);
    CU_ASSERT_EQUAL(cc_round(SIZE_MAX - MiB), 0);
    CU_ASSERT_EQUAL(cc_round(SIZE_MAX - 4 * MiB), SIZE_MAX - 4 * MiB + 1);
}

static void test_reuse_in_stream_order(void) {
    fake_dev *f = fake_new(1u << 30);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    void *a = NULL, *b = NULL, *d = NULL, *e = NULL, *g = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 1000, 0, &a), CC_OK);
    CU_ASSERT_PTR_NOT_NULL(a);
    CU_ASSERT_EQUAL(cc_block_size(c, a), 1024);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_OK);
    CU_ASSERT_EQUAL(cc_block_size(c, a), 0);
    CU_ASSERT_EQUAL(f->n_live, 1); /* kept, not given back */
    /* the same class on the same (device, stream): the same block, no device call */
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 600, 0, &b), CC_OK);
    CU_ASSERT_PTR_EQUAL(b, a);
    CU_ASSERT_EQUAL(f->mallocs, 1);
    CU_ASSERT_EQUAL(cc_free(c, b), CC_OK);
    /* another stream, another device, another class: never that block */
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S2, 1000, 0, &d), CC_OK);
    CU_ASSERT_PTR_NOT_EQUAL(d, a);
    CU_ASSERT_EQUAL(cc_alloc(c, 1, S1, 1000, 0, &e), CC_OK);
    CU_ASSERT_PTR_NOT_EQUAL(e, a);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 2000, 0, &g), CC_OK);
    CU_ASSERT_PTR_NOT_EQUAL(g, a);
    CU_ASSERT_EQUAL(f->mallocs, 4);
    /* a freed block on S2 serves S2 */
    CU_ASSERT_EQUAL(cc_free(c, d), CC_OK);
    void *h = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S2, 1, 0, &h), CC_OK);
    CU_ASSERT_EQUAL(cc_block_size(c, h), 512);
    CU_ASSERT_PTR_NOT_EQUAL(h, d); /* class 512, d is class 1024 */
    void *k = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S2, 1024, 0, &k), CC_OK);
    CU_ASSERT_PTR_EQUAL(k, d);
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.cache_hits, 2);
    CU_ASSERT_EQUAL(st.device_mallocs, 5);
    CU_ASSERT_EQUAL(st.blocks_in_use, 4); /* e g h k; a is cached */
    CU_ASSERT_EQUAL(st.bytes_cached, 1024);
    CU_ASSERT_EQUAL(st.bytes_in_use, 1024 + 2048 + 512 + 1024);
    /* large classes: 2 MiB granules */
    void *big = NULL, *big2 = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 5 * MiB, 0, &big), CC_OK);
    CU_ASSERT_EQUAL(cc_block_size(c, big), 6 * MiB);
    CU_ASSERT_EQUAL(cc_free(c, big), CC_OK);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 4 * MiB + 1, 0, &big2), CC_OK);
    CU_ASSERT_PTR_EQUAL(big2, big);
    cc_destroy(c);
    CU_ASSERT_EQUAL(f->n_live, 0); /* everything given back, in use or cached */
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
}

static void test_stats_and_peaks(void) {
    fake_dev *f = fake_new(1u << 30);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    void *a = NULL, *b = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 3 * MiB, 0, &a), CC_OK); /* 4 MiB */
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 100, 0, &b), CC_OK);     /* 512 B */
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_in_use, 4 * MiB + 512);
    CU_ASSERT_EQUAL(st.peak_bytes_in_use, 4 * MiB + 512);
    CU_ASSERT_EQUAL(st.peak_bytes_reserved, 4 * MiB + 512);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_OK);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_in_use, 512);
    CU_ASSERT_EQUAL(st.bytes_cached, 4 * MiB);
    CU_ASSERT_EQUAL(st.peak_bytes_in_use, 4 * MiB + 512);
    CU_ASSERT_EQUAL(st.peak_bytes_reserved, 4 * MiB + 512);
    cc_reset_peaks(c);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.peak_bytes_in_use, 512);
    CU_ASSERT_EQUAL(st.peak_bytes_reserved, 4 * MiB + 512);
    CU_ASSERT_EQUAL(cc_release_cached(c, -1), 4 * MiB);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_cached, 0);
    CU_ASSERT_EQUAL(f->used, 512);
    CU_ASSERT_EQUAL(st.device_frees, 1);
    CU_ASSERT_EQUAL(cc_free(c, b), CC_OK);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_in_use, 0);
    CU_ASSERT_EQUAL(st.blocks_in_use, 0);
    cc_destroy(c);
    CU_ASSERT_EQUAL(f->n_live, 0);
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
    cc_get_stats(NULL, &st); /* NULL: zeros */
    CU_ASSERT_EQUAL(st.bytes_in_use, 0);
}

static void test_oom_releases_and_retries(void) {
    fake_dev *f = fake_new(8 * MiB);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    void *a = NULL, *b = NULL, *s = NULL, *x = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 2 * MiB, 0, &a), CC_OK);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S2, 2 * MiB, 0, &b), CC_OK);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 1000, 0, &s), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, b), CC_OK);
    /* device 1's cache is not device 0's memory: keep one there */
    void *d1 = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 1, S1, 2 * MiB, 0, &d1), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, d1), CC_OK);
    /* 6 MiB + 1 KiB live; a 4 MiB class does not fit until the cache goes */
    CU_ASSERT_EQUAL(f->used, 6 * MiB + 1024);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 3 * MiB, 0, &x), CC_OK);
    CU_ASSERT_PTR_NOT_NULL(x);
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.oom_releases, 1);
    CU_ASSERT_EQUAL(f->ooms, 1);
    /* device 0's two cached blocks went back, device 1's stayed */
    CU_ASSERT_EQUAL(st.bytes_cached, 2 * MiB);
    CU_ASSERT_EQUAL(st.bytes_in_use, 4 * MiB + 1024);
    CU_ASSERT_EQUAL(st.device_frees, 2);
    /* out of memory for good: a clean failure, nothing held, no retry with
     * nothing of that device cached */
    void *y = (void *)1;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 5 * MiB, 0, &y), CC_E_OOM);
    CU_ASSERT_PTR_NULL(y);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.oom_releases, 1);
    CU_ASSERT_EQUAL(st.blocks_in_use, 2);
    CU_ASSERT_EQUAL(f->n_live, 3);
    /* a request no device can hold */
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, SIZE_MAX, 0, &y), CC_E_OOM);
    CU_ASSERT_PTR_NULL(y);
    cc_destroy(c);
    CU_ASSERT_EQUAL(f->n_live, 0);
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
}

static void test_exact_blocks(void) {
    fake_dev *f = fake_new(1u << 30);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    void *a = NULL, *z = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 3 * MiB + 5, CC_EXACT, &a), CC_OK);
    CU_ASSERT_EQUAL(cc_block_size(c, a), 3 * MiB + 5);
    CU_ASSERT_EQUAL(f->used, 3 * MiB + 5);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 0, CC_EXACT, &z), CC_OK); /* unique, non-NULL */
    CU_ASSERT_PTR_NOT_NULL(z);
    CU_ASSERT_PTR_NOT_EQUAL(z, a);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, z), CC_OK);
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_cached, 0);
    CU_ASSERT_EQUAL(st.bytes_in_use, 0);
    CU_ASSERT_EQUAL(f->n_live, 0); /* given back at once */
    /* and an exact block never comes out of the free lists */
    void *p = NULL, *q = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 512, 0, &p), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, p), CC_OK);
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 512, CC_EXACT, &q), CC_OK);
    CU_ASSERT_PTR_NOT_EQUAL(q, p);
    CU_ASSERT_EQUAL(cc_free(c, q), CC_OK);
    cc_destroy(c);
    CU_ASSERT_EQUAL(f->n_live, 0);
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
}

static void test_bad_frees_and_errors(void) {
    fake_dev *f = fake_new(1u << 30);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    int x = 0;
    CU_ASSERT_EQUAL(cc_free(c, NULL), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, &x), CC_E_UNKNOWN);
    void *a = NULL;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 10, 0, &a), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_OK);
    CU_ASSERT_EQUAL(cc_free(c, a), CC_E_UNKNOWN); /* twice: refused, cache intact */
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_cached, 512);
    /* device errors pass through, nothing held */
    void *p = (void *)1;
    f->fail_next = CC_E_DEVICE;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 4096, 0, &p), CC_E_DEVICE);
    CU_ASSERT_PTR_NULL(p);
    f->null_next = 1;
    CU_ASSERT_EQUAL(cc_alloc(c, 0, S1, 4096, 0, &p), CC_E_DEVICE);
    CU_ASSERT_PTR_NULL(p);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.blocks_in_use, 0);
    CU_ASSERT_EQUAL(st.bytes_in_use, 0);
    /* an OOM with nothing cached on that device is not retried */
    f->fail_next = CC_E_OOM;
    CU_ASSERT_EQUAL(cc_alloc(c, 3, S1, 4096, 0, &p), CC_E_OOM);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.oom_releases, 0);
    CU_ASSERT_PTR_NULL(cc_new(NULL, NULL));
    cc_ops half = {fake_malloc, NULL};
    CU_ASSERT_PTR_NULL(cc_new(&half, f));
    cc_destroy(NULL);
    cc_destroy(c);
    CU_ASSERT_EQUAL(f->n_live, 0);
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
}

static uint32_t next_u32(uint32_t *x) {
    *x = *x * 1664525u + 1013904223u;
    return *x >> 8;
}

static void test_many_blocks(void) {
    fake_dev *f = fake_new((size_t)1 << 40);
    cc_cache *c = cc_new(&fake_ops, f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    enum { N = 1500 };
    static void *p[N];
    uint32_t rng = 7;
    for (int i = 0; i < N; i++) {
        size_t bytes = 1 + next_u32(&rng) % (4 * MiB);
        CU_ASSERT_EQUAL_FATAL(cc_alloc(c, i % 2, i % 3 ? S1 : S2, bytes, 0, &p[i]), CC_OK);
    }
    /* free in a shuffled order; every pointer is found */
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(next_u32(&rng) % (uint32_t)(i + 1));
        void *t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += cc_free(c, p[i]) != CC_OK;
    CU_ASSERT_EQUAL(bad, 0);
    cc_stats st;
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_in_use, 0);
    CU_ASSERT_EQUAL(st.blocks_in_use, 0);
    CU_ASSERT_EQUAL(st.bytes_cached, (uint64_t)f->used);
    /* the same requests again come from the cache: no new device block */
    const uint64_t mallocs = f->mallocs;
    rng = 7;
    for (int i = 0; i < N; i++) {
        size_t bytes = 1 + next_u32(&rng) % (4 * MiB);
        CU_ASSERT_EQUAL_FATAL(cc_alloc(c, i % 2, i % 3 ? S1 : S2, bytes, 0, &p[i]), CC_OK);
    }
    CU_ASSERT_EQUAL(f->mallocs, mallocs);
    cc_get_stats(c, &st);
    CU_ASSERT_EQUAL(st.bytes_cached, 0);
    CU_ASSERT_EQUAL(st.cache_hits, N);
    cc_destroy(c); /* all in use: given back */
    CU_ASSERT_EQUAL(f->n_live, 0);
    CU_ASSERT_EQUAL(f->bad_frees, 0);
    free(f);
}

int main(void) {
    CU_pSuite s = tu_suite("cuda_cache", NULL, NULL);
    if (s == NULL)
        return 1;
    CU_add_test(s, "size classes", test_round);
    CU_add_test(s, "reuse per (device, stream) and class", test_reuse_in_stream_order);
    CU_add_test(s, "statistics and peaks", test_stats_and_peaks);
    CU_add_test(s, "out of memory: release the cache, retry once", test_oom_releases_and_retries);
    CU_add_test(s, "exact blocks are never cached", test_exact_blocks);
    CU_add_test(s, "bad frees, device errors", test_bad_frees_and_errors);
    CU_add_test(s, "many blocks", test_many_blocks);
    return tu_run();
}
