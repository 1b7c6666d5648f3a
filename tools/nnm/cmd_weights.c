/* tools/nnm/cmd_weights.c - `nnm weights inspect FILE` and `nnm weights diff A B`:
 * safetensors files through the nnm_safetensors_* API (no plugins needed). */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_weights(FILE *f) {
    fputs("usage: nnm weights inspect FILE [--json]\n"
          "       nnm weights diff A B [--atol X] [--metadata] [-q]\n"
          "\n"
          "Examine safetensors weight files.\n"
          "\n"
          "commands:\n"
          "  inspect FILE   every tensor (name, dtype, shape, bytes), totals and metadata\n"
          "  diff A B       keys only in one file, dtype/shape differences, largest value\n"
          "                 differences; exit 0 same, 1 different, 2 trouble\n"
          "\n"
          "options:\n"
          "  --plugins DIR also load the plugins in DIR (repeatable; not needed here)\n"
          "  -h, --help    show this help\n"
          "\n"
          "See 'nnm help weights inspect' and 'nnm help weights diff'.\n",
          f);
}

void usage_weights_inspect(FILE *f) {
    fputs("usage: nnm weights inspect FILE [--json]\n"
          "\n"
          "Lists every tensor of a safetensors file in file order: name, dtype, shape\n"
          "and size in bytes, then the totals and the __metadata__ pairs.\n"
          "\n"
          "options:\n"
          "  --json       print one JSON object instead: {\"file\", \"tensors\": [{\"name\",\n"
          "               \"dtype\", \"shape\", \"bytes\"}], \"total_tensors\",\n"
          "               \"total_elements\", \"total_bytes\", \"metadata\"}\n"
          "  -h, --help   show this help\n"
          "\n"
          "exit status: 0 success, 1 the file cannot be read or is not valid, 2 usage error\n",
          f);
}

void usage_weights_diff(FILE *f) {
    fputs("usage: nnm weights diff A B [--atol X] [--metadata] [-q]\n"
          "\n"
          "Compares two safetensors files by tensor name: names only in A or only in B,\n"
          "dtype and shape differences, and for tensors of the same dtype and shape\n"
          "whether they are bitwise identical and, for numeric dtypes, the largest\n"
          "absolute difference of their elements (NaN equals NaN).\n"
          "\n"
          "options:\n"
          "  --atol X     treat value differences <= X as equal (default 0)\n"
          "  --metadata   also compare the __metadata__ pairs (nnmod_version included)\n"
          "  -q, --quiet  print nothing; only the exit status tells\n"
          "  -h, --help   show this help\n"
          "\n"
          "exit status (like diff(1)): 0 the files hold the same tensors, 1 they\n"
          "differ, 2 usage error or a file cannot be read\n",
          f);
}

/* ------------------------------------------------------------------------ */
/* inspect                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t entry_numel(const nnm_st_entry *e) {
    uint64_t n = 1;
    for (int32_t d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    return n;
}

static int weights_inspect(cli_env *env, int argc, char **argv) {
    static const char *cmd = "weights inspect";
    enum { OPT_JSON };
    static const cli_opt opts[] = {{"json", 0, 0, OPT_JSON}, {NULL, 0, 0, 0}};
    cli_parser p;
    const char *path = NULL;
    int json = 0, r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_weights_inspect(stdout); return CLI_EXIT_OK;
        case OPT_JSON: json = 1; break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (!path) return cli_usage(cmd, "missing FILE");

    nnm_ctx *ctx = cli_ctx_new(env, cmd, CLI_CTX_NO_DISCOVERY, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_safetensors *st = NULL;
    nnm_status s = nnm_safetensors_open(ctx, path, &st);
    if (s != NNM_OK) {
        r = cli_fail(cmd, ctx, s);
        nnm_ctx_free(ctx);
        return r;
    }

    uint32_t n = nnm_safetensors_count(st), n_meta = nnm_safetensors_metadata_count(st);
    uint64_t total_bytes = 0, total_elems = 0;
    size_t name_w = 4, dtype_w = 5, shape_w = 5;
    char shape[256];
    r = CLI_EXIT_OK;
    /* First pass: totals and column widths. */
    for (uint32_t i = 0; i < n; i++) {
        nnm_st_entry e = {sizeof e};
        s = nnm_safetensors_entry(st, i, &e);
        if (s != NNM_OK) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        total_bytes += e.nbytes;
        total_elems += entry_numel(&e);
        size_t l = strlen(e.name);
        if (l > name_w) name_w = l < 60 ? l : 60;
        l = strlen(e.dtype_name);
        if (l > dtype_w) dtype_w = l;
        l = strlen(cli_shape_str(e.ndim, e.shape, shape, sizeof shape));
        if (l > shape_w) shape_w = l < 40 ? l : 40;
    }

    if (json) {
        printf("{\"file\": ");
        cli_json_str(stdout, path);
        printf(", \"tensors\": [");
        for (uint32_t i = 0; i < n; i++) {
            nnm_st_entry e = {sizeof e};
            if ((s = nnm_safetensors_entry(st, i, &e)) != NNM_OK) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_str(stdout, e.name);
            printf(", \"dtype\": \"%s\", \"shape\": [", e.dtype_name);
            for (int32_t d = 0; d < e.ndim; d++) printf("%s%" PRId64, d ? ", " : "", e.shape[d]);
            printf("], \"bytes\": %" PRIu64 "}", e.nbytes);
        }
        printf("%s], \"total_tensors\": %" PRIu32 ", \"total_elements\": %" PRIu64
               ", \"total_bytes\": %" PRIu64 ", \"metadata\": {",
               n ? "\n" : "", n, total_elems, total_bytes);
        for (uint32_t i = 0; i < n_meta; i++) {
            const char *k = NULL, *v = NULL;
            if ((s = nnm_safetensors_metadata(st, i, &k, &v)) != NNM_OK) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
            printf("%s", i ? ", " : "");
            cli_json_str(stdout, k);
            printf(": ");
            cli_json_str(stdout, v);
        }
        printf("}}\n");
        goto done;
    }

    char tx[CLI_TEXT_CAP], tx2[CLI_TEXT_CAP]; /* names and metadata come from the file: escaped */
    printf("%s\n", cli_text(path, tx, sizeof tx, 0));
    printf("  %-*s  %-*s  %-*s  %s\n", (int)name_w, "NAME", (int)dtype_w, "DTYPE", (int)shape_w,
           "SHAPE", "BYTES");
    for (uint32_t i = 0; i < n; i++) {
        nnm_st_entry e = {sizeof e};
        if ((s = nnm_safetensors_entry(st, i, &e)) != NNM_OK) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        printf("  %-*s  %-*s  %-*s  %" PRIu64 "\n", (int)name_w, cli_text(e.name, tx, sizeof tx, 0),
               (int)dtype_w, e.dtype_name,
               (int)shape_w, cli_shape_str(e.ndim, e.shape, shape, sizeof shape), e.nbytes);
    }
    printf("total: %" PRIu32 " tensor%s, %" PRIu64 " element%s, %" PRIu64 " byte%s\n", n,
           n == 1 ? "" : "s", total_elems, total_elems == 1 ? "" : "s", total_bytes,
           total_bytes == 1 ? "" : "s");
    if (n_meta) {
        printf("metadata:\n");
        for (uint32_t i = 0; i < n_meta; i++) {
            const char *k = NULL, *v = NULL;
            if ((s = nnm_safetensors_metadata(st, i, &k, &v)) != NNM_OK) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
            printf("  %s: %s\n", cli_text(k, tx, sizeof tx, 0), cli_text(v, tx2, sizeof tx2, 0));
        }
    } else {
        printf("metadata: none\n");
    }

done:
    nnm_safetensors_close(st);
    nnm_ctx_free(ctx);
    return r;
}

/* ------------------------------------------------------------------------ */
/* diff                                                                      */
/* ------------------------------------------------------------------------ */

#define DIFF_SAME 0
#define DIFF_DIFFERENT 1
#define DIFF_TROUBLE 2

typedef struct diff_state {
    const char *cmd;
    nnm_ctx *ctx;
    double atol;
    int quiet;
    unsigned n_only_a, n_only_b, n_meta_diff, n_dtype_shape, n_values, n_identical, n_close;
} diff_state;

/* The largest |a - b| over the elements of two entries of the same shape and
 * numeric dtypes (not necessarily the same one): NaN equals NaN, and NaN
 * against a number gives NaN. */
static double max_abs_diff(const nnm_st_entry *a, const nnm_st_entry *b) {
    double max_abs = 0;
    uint64_t n = entry_numel(a);
    for (uint64_t i = 0; i < n; i++) {
        double x = cli_st_elem(a, i), y = cli_st_elem(b, i);
        if ((isnan(x) && isnan(y)) || x == y) continue;
        double d = fabs(x - y);   /* inf against anything else is inf */
        if (isnan(d)) return NAN; /* NaN against a number */
        if (d > max_abs) max_abs = d;
    }
    return max_abs;
}

/* Compares the values of two entries of the same dtype and shape. Sets
 * *max_abs (numeric dtypes). Returns 1 when bitwise identical. */
static int compare_values(const nnm_st_entry *a, const nnm_st_entry *b, int *numeric,
                          double *max_abs) {
    int identical =
        a->nbytes == b->nbytes && (a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
    *numeric = cli_st_dtype_numeric(a->dtype_name);
    *max_abs = 0;
    if (identical || !*numeric) return identical;
    *max_abs = max_abs_diff(a, b);
    return 0;
}

static int diff_tensors(diff_state *ds, const nnm_safetensors *sa, const nnm_safetensors *sb) {
    char ta[CLI_TEXT_CAP], tb[CLI_TEXT_CAP]; /* the files' text, escaped */
    char s1[256], s2[256];
    uint32_t na = nnm_safetensors_count(sa), nb = nnm_safetensors_count(sb);
    nnm_status s;
    /* Names only in A, and the comparison of common names, in A's order. */
    for (uint32_t i = 0; i < na; i++) {
        nnm_st_entry a = {sizeof a}, b = {sizeof b};
        if ((s = nnm_safetensors_entry(sa, i, &a)) != NNM_OK)
            return cli_fail(ds->cmd, ds->ctx, s), -1;
        s = nnm_safetensors_find(sb, a.name, &b);
        if (s == NNM_E_NOT_FOUND) {
            ds->n_only_a++;
            if (!ds->quiet) printf("only in A: %s\n", cli_text(a.name, ta, sizeof ta, 0));
            continue;
        }
        if (s != NNM_OK) return cli_fail(ds->cmd, ds->ctx, s), -1;
        int same_shape = a.ndim == b.ndim;
        for (int32_t d = 0; same_shape && d < a.ndim; d++) same_shape = a.shape[d] == b.shape[d];
        if (strcmp(a.dtype_name, b.dtype_name) != 0) {
            ds->n_dtype_shape++;
            if (ds->quiet) continue;
            printf("dtype differs: %s: %s vs %s", cli_text(a.name, ta, sizeof ta, 0), a.dtype_name, b.dtype_name);
            if (!same_shape)
                printf(", shape %s vs %s", cli_shape_str(a.ndim, a.shape, s1, sizeof s1),
                       cli_shape_str(b.ndim, b.shape, s2, sizeof s2));
            else if (cli_st_dtype_numeric(a.dtype_name) && cli_st_dtype_numeric(b.dtype_name))
                printf(" (max abs diff %.6g)", max_abs_diff(&a, &b));
            printf("\n");
            continue;
        }
        if (!same_shape) {
            ds->n_dtype_shape++;
            if (!ds->quiet)
                printf("shape differs: %s: %s vs %s\n", cli_text(a.name, ta, sizeof ta, 0),
                       cli_shape_str(a.ndim, a.shape, s1, sizeof s1),
                       cli_shape_str(b.ndim, b.shape, s2, sizeof s2));
            continue;
        }
        int numeric;
        double max_abs;
        if (compare_values(&a, &b, &numeric, &max_abs)) {
            ds->n_identical++;
            continue;
        }
        if (!numeric) {
            ds->n_values++;
            if (!ds->quiet) printf("values differ: %s (%s, bitwise)\n", cli_text(a.name, ta, sizeof ta, 0), a.dtype_name);
        } else if (!isnan(max_abs) && max_abs <= ds->atol) {
            ds->n_close++;
            if (!ds->quiet)
                printf("within tolerance: %s: max abs diff %.6g <= %.6g\n", cli_text(a.name, ta, sizeof ta, 0), max_abs,
                       ds->atol);
        } else {
            ds->n_values++;
            if (!ds->quiet) printf("values differ: %s: max abs diff %.6g\n", cli_text(a.name, ta, sizeof ta, 0), max_abs);
        }
    }
    for (uint32_t i = 0; i < nb; i++) {
        nnm_st_entry a = {sizeof a}, b = {sizeof b};
        if ((s = nnm_safetensors_entry(sb, i, &b)) != NNM_OK)
            return cli_fail(ds->cmd, ds->ctx, s), -1;
        s = nnm_safetensors_find(sa, b.name, &a);
        if (s == NNM_E_NOT_FOUND) {
            ds->n_only_b++;
            if (!ds->quiet) printf("only in B: %s\n", cli_text(b.name, tb, sizeof tb, 0));
        } else if (s != NNM_OK) {
            return cli_fail(ds->cmd, ds->ctx, s), -1;
        }
    }
    return 0;
}

/* Finds a metadata value by key; NULL when absent. */
static const char *meta_find(const nnm_safetensors *st, const char *key) {
    uint32_t n = nnm_safetensors_metadata_count(st);
    for (uint32_t i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && strcmp(k, key) == 0) return v;
    }
    return NULL;
}

static int diff_metadata(diff_state *ds, const nnm_safetensors *sa, const nnm_safetensors *sb) {
    nnm_status s;
    char ta[CLI_TEXT_CAP], tb[CLI_TEXT_CAP], tc[CLI_TEXT_CAP]; /* the files' text, escaped */
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(sa); i++) {
        const char *k = NULL, *v = NULL;
        if ((s = nnm_safetensors_metadata(sa, i, &k, &v)) != NNM_OK)
            return cli_fail(ds->cmd, ds->ctx, s), -1;
        const char *w = meta_find(sb, k);
        if (!w) {
            ds->n_meta_diff++;
            if (!ds->quiet) printf("metadata only in A: %s\n", cli_text(k, ta, sizeof ta, 0));
        } else if (strcmp(v, w) != 0) {
            ds->n_meta_diff++;
            if (!ds->quiet) printf("metadata differs: %s: '%s' vs '%s'\n", cli_text(k, ta, sizeof ta, 0),
                                    cli_text(v, tb, sizeof tb, 0), cli_text(w, tc, sizeof tc, 0));
        }
    }
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(sb); i++) {
        const char *k = NULL, *v = NULL;
        if ((s = nnm_safetensors_metadata(sb, i, &k, &v)) != NNM_OK)
            return cli_fail(ds->cmd, ds->ctx, s), -1;
        if (!meta_find(sa, k)) {
            ds->n_meta_diff++;
            if (!ds->quiet) printf("metadata only in B: %s\n", cli_text(k, ta, sizeof ta, 0));
        }
    }
    return 0;
}

static int weights_diff(cli_env *env, int argc, char **argv) {
    static const char *cmd = "weights diff";
    enum { OPT_ATOL, OPT_METADATA, OPT_QUIET };
    static const cli_opt opts[] = {{"atol", 0, 1, OPT_ATOL},
                                   {"metadata", 0, 0, OPT_METADATA},
                                   {"quiet", 'q', 0, OPT_QUIET},
                                   {NULL, 0, 0, 0}};
    cli_parser p;
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0, metadata = 0, r;
    diff_state ds = {cmd, NULL, 0.0, 0, 0, 0, 0, 0, 0, 0, 0};
    env->trouble_status = DIFF_TROUBLE;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_weights_diff(stdout); return CLI_EXIT_OK;
        case OPT_ATOL:
            if (cli_parse_double(p.arg, &ds.atol) || ds.atol < 0)
                return cli_usage(cmd, "--atol: expected a number >= 0, got '%s'", p.arg);
            break;
        case OPT_METADATA: metadata = 1; break;
        case OPT_QUIET: ds.quiet = 1; break;
        case CLI_POSITIONAL:
            if (n_paths == 2) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            paths[n_paths++] = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (n_paths < 2) return cli_usage(cmd, "expected two files, A and B");

    ds.ctx = cli_ctx_new(env, cmd, CLI_CTX_NO_DISCOVERY, 0);
    if (!ds.ctx) return DIFF_TROUBLE;
    nnm_safetensors *st[2] = {NULL, NULL};
    r = DIFF_TROUBLE;
    for (int i = 0; i < 2; i++) {
        nnm_status s = nnm_safetensors_open(ds.ctx, paths[i], &st[i]);
        if (s != NNM_OK) {
            cli_fail(cmd, ds.ctx, s);
            goto done;
        }
    }
    if (diff_tensors(&ds, st[0], st[1])) goto done;
    if (metadata && diff_metadata(&ds, st[0], st[1])) goto done;

    unsigned n_diff = ds.n_only_a + ds.n_only_b + ds.n_dtype_shape + ds.n_values + ds.n_meta_diff;
    if (!ds.quiet) {
        if (!n_diff && !ds.n_close) {
            printf("identical (%u tensor%s)\n", ds.n_identical, ds.n_identical == 1 ? "" : "s");
        } else {
            printf("summary: %u identical, %u within tolerance, %u with different values, "
                   "%u with different dtype or shape, %u only in A, %u only in B",
                   ds.n_identical, ds.n_close, ds.n_values, ds.n_dtype_shape, ds.n_only_a,
                   ds.n_only_b);
            if (metadata)
                printf(", %u metadata difference%s", ds.n_meta_diff,
                       ds.n_meta_diff == 1 ? "" : "s");
            printf("\n");
        }
    }
    r = n_diff ? DIFF_DIFFERENT : DIFF_SAME;
done:
    nnm_safetensors_close(st[0]);
    nnm_safetensors_close(st[1]);
    nnm_ctx_free(ds.ctx);
    return r;
}

int cmd_weights(cli_env *env, int argc, char **argv) {
    if (argc < 2) return cli_usage("weights", "missing command: inspect or diff");
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        usage_weights(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(sub, "inspect") == 0) return weights_inspect(env, argc - 1, argv + 1);
    if (strcmp(sub, "diff") == 0) return weights_diff(env, argc - 1, argv + 1);
    return cli_usage("weights", "unknown command '%s' (expected inspect or diff)", sub);
}
