/* tools/nnm/cmd_predict.c - `nnm predict MANIFEST --weights W`: the top-k
 * classes, with probabilities, of inputs from a safetensors file or one sample
 * of an IDX file. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "train_common.h"

void usage_predict(FILE *f) {
    fputs("usage: nnm predict [options] MANIFEST --weights W.safetensors\n"
          "                   (--input-file X.safetensors[:NAME] | --idx FILE[,LABELS] --index I)\n"
          "\n"
          "Builds the manifest's model, loads W, and prints for each input the k most\n"
          "likely classes with their probabilities (softmax of the output; class names\n"
          "from the manifest's metadata \"class_names\" when present). Inputs are in the\n"
          "units of the training data (u8 pixels, say): the normalisation recorded in a\n"
          "checkpoint of nnm train (or the manifest's mean/std) is applied.\n"
          "\n"
          "options:\n"
          "  --weights FILE        the weights (required)\n"
          "  --input-file F[:NAME] the tensor NAME of F (may be left out when F holds one):\n"
          "                        with an input_shape in the training section, any tensor\n"
          "                        holding a whole number of samples; otherwise a batch\n"
          "                        [N, ...] as the model takes it\n"
          "  --idx FILE[,LABELS]   an IDX inputs file (gzipped or not), and optionally its\n"
          "                        labels, to print the true class too\n"
          "  --index I             the sample of --idx (from 0)\n"
          "  --top K               classes shown per input (default 3)\n"
          "  --plugins DIR         also load the plugins in DIR (repeatable)\n"
          "  -h, --help            show this help\n"
          "\n"
          "exit status: 0 success, 1 failure, 2 usage error\n",
          f);
}

/* "a,b,c" metadata class_names -> names[c] (NULL when absent). */
static const char *class_name(const nnm_manifest *mf, int64_t c, char *buf, size_t cap) {
    if (c < 0) return NULL;
    for (uint32_t i = 0; i < nnm_manifest_metadata_count(mf); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_manifest_metadata(mf, i, &k, &v) || strcmp(k, "class_names")) continue;
        for (int64_t j = 0; j < c && v; j++) {
            v = strchr(v, ',');
            if (v) v++;
        }
        if (!v || !*v || *v == ',') return NULL;
        size_t n = 0;
        char raw[256];
        while (v[n] && v[n] != ',' && n + 1 < sizeof raw) {
            raw[n] = v[n];
            n++;
        }
        raw[n] = 0;
        /* every control byte (C0, DEL, C1) escaped: a name is text from a file */
        return cli_text(raw, buf, cap, 0);
    }
    return NULL;
}

/* A batch from a safetensors tensor, transformed like the training data. */
static int read_file_input(nnm_ctx *ctx, const char *cmd, const train_params *tp, const char *spec,
                           nnm_tensor **out) {
    char *path = malloc(strlen(spec) + 1);
    if (!path) return cli_failf(cmd, "out of memory");
    strcpy(path, spec);
    const char *name = NULL;
    char *colon = strrchr(path, ':');
    if (colon && access(path, F_OK) != 0) {
        *colon = '\0';
        name = colon + 1;
    }
    nnm_safetensors *st = NULL;
    nnm_st_entry e = {sizeof e};
    float *v = NULL;
    int r = CLI_EXIT_FAIL;
    nnm_status s = nnm_safetensors_open(ctx, path, &st);
    if (s) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    if (name)
        s = nnm_safetensors_find(st, name, &e);
    else if (nnm_safetensors_count(st) == 1)
        s = nnm_safetensors_entry(st, 0, &e);
    else {
        r = cli_failf(cmd, "%s holds %" PRIu32 " tensors; name one with %s:NAME", path,
                      nnm_safetensors_count(st), path);
        goto done;
    }
    if (s) {
        r = cli_failf(cmd, "%s: no tensor named '%s'", path, name ? name : "");
        goto done;
    }
    if (!cli_st_dtype_numeric(e.dtype_name)) {
        r = cli_failf(cmd, "%s: tensor '%s' has dtype %s, which is not numeric", path, e.name,
                      e.dtype_name);
        goto done;
    }
    /* Both products are of untrusted sizes: checked (the reader bounds the
     * tensor's by the file's size; input_shape's is bounded when it is set,
     * but a product that wrapped to 0 would divide by zero here). */
    int64_t nn = 0, per = 1;
    if (cli_shape_numel(e.ndim, e.shape, &nn) ||
        cli_shape_numel(tp->input_ndim, tp->input_shape, &per) || per < 1) {
        r = cli_failf(cmd, "%s: tensor '%s': its shape or the input_shape has too many values",
                      path, e.name);
        goto done;
    }
    const uint64_t n = (uint64_t)nn;
    int64_t shape[NNM_MAX_DIMS];
    int32_t ndim;
    if (tp->input_ndim) {
        if (!n || n % (uint64_t)per) {
            char want[128];
            r = cli_failf(cmd, "%s: tensor '%s' holds %" PRIu64 " values, not a whole number of "
                          "samples of shape %s", path, e.name, n,
                          cli_shape_str(tp->input_ndim, tp->input_shape, want, sizeof want));
            goto done;
        }
        shape[0] = (int64_t)(n / (uint64_t)per);
        memcpy(shape + 1, tp->input_shape, (size_t)tp->input_ndim * sizeof *shape);
        ndim = tp->input_ndim + 1;
    } else {
        if (e.ndim < 1) {
            r = cli_failf(cmd, "%s: tensor '%s' is a scalar; a batch [N, ...] is needed", path,
                          e.name);
            goto done;
        }
        memcpy(shape, e.shape, (size_t)e.ndim * sizeof *shape);
        ndim = e.ndim;
    }
    double scale = tp->scale ? tp->scale : !strcmp(e.dtype_name, "U8") ? 1.0 / 255 : 1.0;
    double mean = tp->normalize ? tp->mean : 0, std = tp->normalize && tp->std > 0 ? tp->std : 1;
    const uint64_t limit = tp->max_data_bytes ? tp->max_data_bytes : NNM_DATASET_DEFAULT_MAX_BYTES;
    if (n > limit / sizeof *v) {
        r = cli_failf(cmd, "%s: tensor '%s' holds %" PRIu64 " values: %" PRIu64 " bytes as f32, "
                      "over the limit of %" PRIu64 " (training.max_data_bytes)",
                      path, e.name, n, n * (uint64_t)sizeof *v, limit);
        goto done;
    }
    v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) {
        r = cli_failf(cmd, "out of memory");
        goto done;
    }
    /* per sample, for messages: the input_shape's values, else the batch's */
    uint64_t per_sample = 1;
    for (int32_t d = 1; d < ndim; d++) per_sample *= (uint64_t)shape[d];
    for (uint64_t i = 0; i < n; i++) {
        double x = cli_st_elem(&e, i);
        if (!isfinite(x)) { /* garbage in: no prediction is better than a wrong one */
            r = cli_failf(cmd, "%s: tensor '%s': sample %" PRIu64 " holds %s at value %" PRIu64
                          " (inputs must be finite)",
                          path, e.name, i / per_sample, isnan(x) ? "NaN" : "an infinity",
                          i % per_sample);
            goto done;
        }
        v[i] = (float)((x * scale - mean) / std);
    }
    s = nnm_tensor_from_f32(ctx, ndim, shape, v, out);
    r = s ? cli_fail(cmd, ctx, s) : CLI_EXIT_OK;
done:
    free(v);
    nnm_safetensors_close(st);
    free(path);
    return r;
}

int cmd_predict(cli_env *env, int argc, char **argv) {
    static const char *cmd = "predict";
    enum { OPT_WEIGHTS, OPT_INPUT_FILE, OPT_IDX, OPT_INDEX, OPT_TOP };
    static const cli_opt opts[] = {{"weights", 0, 1, OPT_WEIGHTS}, {"input-file", 0, 1, OPT_INPUT_FILE},
                                   {"idx", 0, 1, OPT_IDX},         {"index", 0, 1, OPT_INDEX},
                                   {"top", 0, 1, OPT_TOP},         {NULL, 0, 0, 0}};
    const char *path = NULL, *weights = NULL, *input_file = NULL, *idx = NULL;
    uint64_t index = 0, top = 3;
    int have_index = 0, r;
    cli_parser p;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_predict(stdout); return CLI_EXIT_OK;
        case OPT_WEIGHTS: weights = p.arg; break;
        case OPT_INPUT_FILE: input_file = p.arg; break;
        case OPT_IDX: idx = p.arg; break;
        case OPT_INDEX:
            if (cli_parse_u64(p.arg, &index) || index > INT64_MAX)
                return cli_usage(cmd, "--index: expected a number >= 0, got '%s'", p.arg);
            have_index = 1;
            break;
        case OPT_TOP:
            if (cli_parse_u64(p.arg, &top) || top < 1 || top > 1000000)
                return cli_usage(cmd, "--top: expected a number >= 1, got '%s'", p.arg);
            break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (!path) return cli_usage(cmd, "missing MANIFEST");
    if (!weights) return cli_usage(cmd, "missing --weights FILE");
    if (!input_file == !idx) return cli_usage(cmd, "give one of --input-file and --idx");
    if (idx && !have_index) return cli_usage(cmd, "--idx needs --index I");

    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_manifest *mf = NULL;
    nnm_module *model = NULL;
    nnm_dataset *ds = NULL;
    nnm_loader *ld = NULL;
    nnm_tensor *x = NULL, *y = NULL, *out = NULL;
    float *v = NULL;
    train_params tp;
    nnm_status s;
    r = CLI_EXIT_FAIL;
    if (cli_manifest_open(ctx, cmd, path, 0, &mf, NULL)) goto done;
    if (train_params_init(&tp, cmd, path, mf)) goto done;
    if (train_params_from_weights(ctx, cmd, &tp, weights)) goto done;
    if ((s = nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &model))) {
        r = cli_fail_file(cmd, path, ctx, s);
        goto done;
    }
    if ((s = nnm_checkpoint_load(weights, model, NULL))) {
        r = cli_fail_file(cmd, weights, ctx, s);
        goto done;
    }
    if (train_model_to_device(ctx, cmd, &tp, model)) goto done; /* the "device" key */
    if (!tp.have_std && tp.normalize)
        cli_warn(cmd, "%s records no input normalisation and the manifest gives no mean/std: "
                 "inputs are only scaled", weights);
    if (input_file) {
        if (read_file_input(ctx, cmd, &tp, input_file, &x)) goto done;
    } else {
        char buf[2 * TRAIN_MAX_PATH];
        snprintf(buf, sizeof buf, "%s", idx);
        char *comma = strchr(buf, ',');
        if (comma) *comma = '\0';
        nnm_dataset_options dopt = train_dataset_options(&tp);
        if ((s = nnm_dataset_open_idx_v2(ctx, buf, comma ? comma + 1 : NULL, &dopt, &ds))) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        nnm_dataset_info info = {sizeof info};
        nnm_dataset_info_get(ds, &info);
        if ((int64_t)index >= info.n_samples) {
            r = cli_failf(cmd, "--index %" PRIu64 ": %s holds %" PRId64 " samples", index, buf,
                          info.n_samples);
            goto done;
        }
        nnm_loader_options lo = train_loader_options(&tp, 0);
        lo.batch_size = 1;
        if ((s = nnm_loader_new(ds, &lo, &ld))) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        for (uint64_t i = 0; i <= index; i++) {
            nnm_tensor_release(x);
            nnm_tensor_release(y);
            x = y = NULL;
            if ((s = nnm_loader_next(ld, &x, &y)) || !x) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
        }
    }
    nnm_module_train(model, 0);
    if (tp.device.type != NNM_DEVICE_CPU) { /* x to the model's device; y stays here */
        nnm_tensor *xd = NULL;
        if ((s = train_to_device(tp.device, x, &xd))) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        nnm_tensor_release(x);
        x = xd;
    }
    int was = nnm_grad_set_enabled(0);
    s = nnm_module_call(model, &x, 1, &out, 1);
    nnm_grad_set_enabled(was);
    if (s) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    const nnm_tensor_desc *od = nnm_tensor_desc_get(out);
    if (od->ndim != 2) {
        char os[128];
        r = cli_failf(cmd, "the model's output has shape %s; predict needs [N, classes]",
                      cli_shape_str(od->ndim, od->shape, os, sizeof os));
        goto done;
    }
    int64_t n = od->shape[0], classes = od->shape[1], total = 0;
    if (cli_mul_i64(n, classes, &total) || classes < 1) {
        r = cli_failf(cmd, "the model's output [%" PRId64 ", %" PRId64 "] cannot be read", n,
                      classes);
        goto done;
    }
    v = malloc((size_t)(total ? total : 1) * sizeof *v);
    if (!v || nnm_tensor_to_f32(out, v, (size_t)total)) {
        r = cli_failf(cmd, "cannot read the model's output");
        goto done;
    }
    for (int64_t i = 0; i < total; i++)
        if (!isfinite(v[i])) { /* "nan%" three times helps no one */
            r = cli_failf(cmd,
                          "the model's output for input %" PRId64 " is not finite (%g at class "
                          "%" PRId64 "): the weights of %s may hold non-finite values",
                          idx ? (int64_t)index : i / classes, (double)v[i], i % classes, weights);
            goto done;
        }
    if ((int64_t)top > classes) top = (uint64_t)classes;
    for (int64_t i = 0; i < n; i++) {
        float *row = v + i * classes;
        /* softmax, in double, shifted by the max */
        double mx = row[train_argmax(row, classes)], sum = 0;
        for (int64_t c = 0; c < classes; c++) sum += exp((double)row[c] - mx);
        if (idx) {
            printf("sample %" PRIu64, index);
            if (y) {
                int64_t t = ((const int64_t *)nnm_tensor_desc_get(y)->data)[0];
                char nb[64];
                const char *tn = class_name(mf, t, nb, sizeof nb);
                if (t == TRAIN_IGNORE_INDEX)
                    printf(" (target %" PRId64 ": no class, ignored)", t);
                else
                    printf(" (true class %" PRId64 "%s%s)", t, tn ? " " : "", tn ? tn : "");
            }
            printf(":\n");
        } else {
            printf("input %" PRId64 ":\n", i);
        }
        for (uint64_t k = 0; k < top; k++) {
            int64_t best = train_argmax(row, classes);
            double prob = exp((double)row[best] - mx) / sum;
            char nb[64];
            const char *name = class_name(mf, best, nb, sizeof nb);
            printf("  %2" PRId64 " %-14s %6.2f%%\n", best, name ? name : "", 100 * prob);
            row[best] = -INFINITY;
        }
    }
    r = CLI_EXIT_OK;
done:
    free(v);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(out);
    nnm_loader_free(ld);
    nnm_dataset_free(ds);
    nnm_module_release(model);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
