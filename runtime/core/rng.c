/* runtime/core/rng.c - the context's generator for parameter initialisation:
 * xoshiro256** seeded through splitmix64, so a seed gives the same weights on
 * every platform. */
#include <math.h>

#include "internal.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void nnm__rng_seed(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

double nnm__rng_uniform(uint64_t s[4]) { return (double)(next(s) >> 11) * 0x1.0p-53; }

double nnm__rng_normal(uint64_t s[4]) {
    /* Box-Muller; u1 in (0, 1] keeps the log finite. */
    double u1 = 1.0 - nnm__rng_uniform(s);
    double u2 = nnm__rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

NNM_API nnm_status nnm_ctx_manual_seed(nnm_ctx *ctx, uint64_t seed) {
    if (!ctx) return NNM_E_INVALID;
    nnm__rng_seed(ctx->rng, seed ? seed : 0x6e6e6d6f64ull);
    return NNM_OK;
}
