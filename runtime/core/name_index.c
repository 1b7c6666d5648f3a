/* runtime/core/name_index.c - finding an item of an append-only list by name in
 * constant time, for the lists a document can make long: a module's
 * children, a config's keys. Without it, a 1.8 MB manifest of 100,000
 * children, or of one config with 100,000 keys, took 12 to 14 s to read
 * (every append compared against every earlier name).
 *
 * Open addressing with linear probing; a slot holds item index + 1 (0 =
 * empty); the table stays at most half full. Items keep their own FNV-1a
 * hash, which is what the table is rebuilt from as it grows.
 */
#include <stdlib.h>

#include "internal.h"

uint32_t nnm__name_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void put(nnm__name_index *x, uint32_t h, uint32_t item) {
    uint32_t k = h & x->mask;
    while (x->slots[k]) k = (k + 1) & x->mask;
    x->slots[k] = item + 1;
}

void nnm__name_index_added(nnm__name_index *x, uint32_t n, const void *items,
                           uint32_t (*hash_at)(const void *items, uint32_t i)) {
    if (n < NNM__NAME_INDEX_MIN) return;
    if (x->slots && (uint64_t)n * 2 <= (uint64_t)x->mask + 1) {
        put(x, hash_at(items, n - 1), n - 1);
        return;
    }
    uint64_t cap = 64;
    while (cap < (uint64_t)n * 4) cap *= 2;
    free(x->slots);
    x->slots = cap <= UINT32_MAX ? calloc((size_t)cap, sizeof *x->slots) : NULL;
    x->mask = x->slots ? (uint32_t)(cap - 1) : 0;
    for (uint32_t i = 0; x->slots && i < n; i++) put(x, hash_at(items, i), i);
}

void nnm__name_index_free(nnm__name_index *x) {
    free(x->slots);
    x->slots = NULL;
    x->mask = 0;
}
