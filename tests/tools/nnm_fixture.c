/* tests/tools/nnm_fixture.c - helper of the nnm tool tests (test_nnm.sh).
 *
 *   nnm_fixture weights DIR
 *       writes small safetensors files into DIR for `nnm weights inspect/diff`:
 *       a (w [2, 3] f32, b [3] f32, steps [1] i64, metadata owner=test),
 *       a_copy (the same tensors, other metadata), a_close (w[0] + 1e-5),
 *       a_far (w[0] + 0.5), a_extra (a plus c [2]), a_shape (w as [3, 2]),
 *       a_int (steps differs), a_nan (w[1] NaN) and one.safetensors (a single
 *       tensor "x" [2, 4]).
 *   nnm_fixture check-run FILE NAME INDEX < output-of-nnm-run
 *       finds "output INDEX: shape [...], f32, N values" and the values line
 *       after it in `nnm run`'s output and compares them with the tensor NAME
 *       of the safetensors FILE (same count, |x - y| <= 1e-4 + 1e-4 |y|).
 *
 *   nnm_fixture check-file FILE NAME OUT OUTNAME
 *       compares every value of tensor OUTNAME of the safetensors OUT (what
 *       `nnm run --output` wrote) with tensor NAME of FILE: same shape, F32,
 *       |x - y| <= 1e-4 + 1e-4 |y|.
 *
 * Exits 0 on success, 1 with a message on stderr otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmod/nnmod.h"

static int fail_ctx(nnm_ctx *ctx, const char *what, nnm_status st) {
    fprintf(stderr, "nnm_fixture: %s: %s: %s\n", what, nnm_status_name(st), nnm_ctx_errmsg(ctx));
    return 1;
}

/* Writes DIR/NAME.safetensors with w (shape w_shape), b, steps, and c when
 * with_c. */
static int write_file(nnm_ctx *ctx, const char *dir, const char *name, const float *w,
                      const int64_t *w_shape, int64_t steps, int with_c, const char *owner) {
    static const float b[3] = {0.5f, -0.25f, 0.125f};
    static const float c[2] = {7.0f, 8.0f};
    int64_t b_shape[1] = {3}, c_shape[1] = {2}, s_shape[1] = {1};
    nnm_tensor *t[4] = {NULL, NULL, NULL, NULL};
    const char *names[4] = {"w", "b", "steps", "c"};
    nnm_kv meta[1] = {{"owner", owner}};
    char path[4096];
    nnm_status st;
    int rc = 1;
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    if ((st = nnm_tensor_from_f32(ctx, 2, w_shape, w, &t[0])) ||
        (st = nnm_tensor_from_f32(ctx, 1, b_shape, b, &t[1])) ||
        (st = nnm_tensor_from_i64(ctx, 1, s_shape, &steps, &t[2])) ||
        (with_c && (st = nnm_tensor_from_f32(ctx, 1, c_shape, c, &t[3])))) {
        fail_ctx(ctx, path, st);
        goto done;
    }
    if ((st = nnm_safetensors_write(ctx, path, with_c ? 4u : 3u, names, t, 1, meta))) {
        fail_ctx(ctx, path, st);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < 4; i++) nnm_tensor_release(t[i]);
    return rc;
}

static int make_weights(const char *dir) {
    nnm_ctx *ctx = NULL;
    nnm_status st = nnm_ctx_new(NULL, &ctx);
    if (st) {
        fprintf(stderr, "nnm_fixture: nnm_ctx_new: %s\n", nnm_status_name(st));
        return 1;
    }
    const float w[6] = {1.0f, -2.0f, 3.5f, 0.25f, -0.75f, 6.0f};
    float v[6];
    int64_t shape[2] = {2, 3}, tshape[2] = {3, 2};
    int rc = 0;
    rc |= write_file(ctx, dir, "a", w, shape, 42, 0, "test");
    rc |= write_file(ctx, dir, "a_copy", w, shape, 42, 0, "someone else");
    memcpy(v, w, sizeof v);
    v[0] += 1e-5f;
    rc |= write_file(ctx, dir, "a_close", v, shape, 42, 0, "test");
    memcpy(v, w, sizeof v);
    v[0] += 0.5f;
    rc |= write_file(ctx, dir, "a_far", v, shape, 42, 0, "test");
    rc |= write_file(ctx, dir, "a_extra", w, shape, 42, 1, "test");
    rc |= write_file(ctx, dir, "a_shape", w, tshape, 42, 0, "test");
    rc |= write_file(ctx, dir, "a_int", w, shape, 43, 0, "test");
    memcpy(v, w, sizeof v);
    v[1] = NAN;
    rc |= write_file(ctx, dir, "a_nan", v, shape, 42, 0, "test");

    /* one.safetensors: a single tensor, for `nnm run --input-file F`. */
    const float x[8] = {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f, 0.7f, -0.8f};
    int64_t x_shape[2] = {2, 4};
    nnm_tensor *xt = NULL;
    const char *xname = "x";
    char path[4096];
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    if ((st = nnm_tensor_from_f32(ctx, 2, x_shape, x, &xt)) ||
        (st = nnm_safetensors_write(ctx, path, 1, &xname, &xt, 0, NULL)))
        rc |= fail_ctx(ctx, path, st);
    nnm_tensor_release(xt);
    nnm_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int check_run(const char *file, const char *name, const char *index) {
    char line[65536], want[64];
    long n_values = -1;
    int rc = 1;
    snprintf(want, sizeof want, "output %s: ", index);
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, want, strlen(want)) != 0) continue;
        const char *f32 = strstr(line, ", f32, ");
        if (!f32 || sscanf(f32 + 7, "%ld", &n_values) != 1) {
            fprintf(stderr, "nnm_fixture: cannot parse: %s", line);
            return 1;
        }
        break;
    }
    if (n_values < 0) {
        fprintf(stderr, "nnm_fixture: no line starting with '%s'\n", want);
        return 1;
    }
    if (!fgets(line, sizeof line, stdin)) {
        fprintf(stderr, "nnm_fixture: no values after '%s'\n", want);
        return 1;
    }

    nnm_ctx *ctx = NULL;
    nnm_safetensors *st = NULL;
    nnm_st_entry e = {sizeof e};
    nnm_status s = nnm_ctx_new(NULL, &ctx);
    if (s) {
        fprintf(stderr, "nnm_fixture: nnm_ctx_new: %s\n", nnm_status_name(s));
        return 1;
    }
    if ((s = nnm_safetensors_open(ctx, file, &st)) || (s = nnm_safetensors_find(st, name, &e))) {
        fail_ctx(ctx, file, s);
        goto done;
    }
    if (strcmp(e.dtype_name, "F32") != 0) {
        fprintf(stderr, "nnm_fixture: %s: %s is %s, not F32\n", file, name, e.dtype_name);
        goto done;
    }
    long numel = 1;
    for (int32_t d = 0; d < e.ndim; d++) numel *= (long)e.shape[d];
    if (numel != n_values) {
        fprintf(stderr, "nnm_fixture: nnm printed %ld values, %s has %ld\n", n_values, name, numel);
        goto done;
    }
    const char *p = line;
    long checked = 0;
    for (long i = 0; i < numel && i < 16; i++) {
        char *end = NULL;
        double got = strtod(p, &end);
        if (end == p) {
            fprintf(stderr, "nnm_fixture: value %ld missing in: %s", i, line);
            goto done;
        }
        p = end;
        float ref;
        memcpy(&ref, (const char *)e.data + i * (long)sizeof ref, sizeof ref);
        if (!(fabs(got - (double)ref) <= 1e-4 + 1e-4 * fabs((double)ref))) {
            fprintf(stderr, "nnm_fixture: %s[%ld]: nnm printed %.9g, expected %.9g\n", name, i, got,
                    (double)ref);
            goto done;
        }
        checked++;
    }
    printf("checked %ld values of %s\n", checked, name);
    rc = 0;
done:
    nnm_safetensors_close(st);
    nnm_ctx_free(ctx);
    return rc;
}

static int check_file(const char *file, const char *name, const char *out, const char *out_name) {
    nnm_ctx *ctx = NULL;
    nnm_safetensors *a = NULL, *b = NULL;
    nnm_st_entry ea = {sizeof ea}, eb = {sizeof eb};
    int rc = 1;
    nnm_status s = nnm_ctx_new(NULL, &ctx);
    if (s) return 1;
    if ((s = nnm_safetensors_open(ctx, file, &a)) || (s = nnm_safetensors_find(a, name, &ea))) {
        fail_ctx(ctx, file, s);
        goto done;
    }
    if ((s = nnm_safetensors_open(ctx, out, &b)) || (s = nnm_safetensors_find(b, out_name, &eb))) {
        fail_ctx(ctx, out, s);
        goto done;
    }
    if (strcmp(ea.dtype_name, "F32") || strcmp(eb.dtype_name, "F32") || ea.ndim != eb.ndim ||
        ea.nbytes != eb.nbytes) {
        fprintf(stderr, "nnm_fixture: %s:%s and %s:%s differ in dtype or shape\n", file, name, out, out_name);
        goto done;
    }
    for (int32_t d = 0; d < ea.ndim; d++)
        if (ea.shape[d] != eb.shape[d]) {
            fprintf(stderr, "nnm_fixture: shapes differ in dim %d\n", (int)d);
            goto done;
        }
    long n = (long)(ea.nbytes / 4);
    for (long i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, (const char *)eb.data + i * 4, 4);
        memcpy(&y, (const char *)ea.data + i * 4, 4);
        if (!(fabs((double)x - (double)y) <= 1e-4 + 1e-4 * fabs((double)y))) {
            fprintf(stderr, "nnm_fixture: %s[%ld]: %.9g, expected %.9g\n", out_name, i, (double)x, (double)y);
            goto done;
        }
    }
    printf("checked all %ld values of %s\n", n, out_name);
    rc = 0;
done:
    nnm_safetensors_close(a);
    nnm_safetensors_close(b);
    nnm_ctx_free(ctx);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "weights") == 0) return make_weights(argv[2]);
    if (argc == 5 && strcmp(argv[1], "check-run") == 0) return check_run(argv[2], argv[3], argv[4]);
    if (argc == 6 && strcmp(argv[1], "check-file") == 0) return check_file(argv[2], argv[3], argv[4], argv[5]);
    fprintf(stderr,
            "usage: nnm_fixture weights DIR | check-run FILE NAME INDEX < nnm-run-output\n");
    return 2;
}
