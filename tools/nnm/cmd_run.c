/* tools/nnm/cmd_run.c - `nnm run FILE`: build a manifest's model, make or read
 * its inputs, run one forward pass under no-grad and print the outputs. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define RUN_MAX_IO 16 /* inputs and outputs one run handles */
#define RUN_SHOW 16   /* values printed per output */

void usage_run(FILE *f) {
    fputs("usage: nnm run [options] FILE (--input SHAPE | --input-file F.safetensors[:NAME])...\n"
          "\n"
          "Builds the manifest's model (with its weights, or those of --weights, unless\n"
          "--no-weights), runs one forward pass with gradients off, and prints each\n"
          "output's shape and its first 16 values (%.6g) with the total count. Inputs\n"
          "are given in order, one option per input of the model.\n"
          "\n"
          "options:\n"
          "  --input SHAPE       a random f32 input of SHAPE ('1x4', '1,4' or '[1, 4]'),\n"
          "                      uniform in [-1, 1), from the seed\n"
          "  --input-file F[:NAME]\n"
          "                      the tensor NAME of the safetensors file F (NAME may be left\n"
          "                      out when F holds one tensor); floating dtypes are read as\n"
          "                      f32, integer ones as i64, bool ones stay bool\n"
          "  --seed N            seed of the random inputs and of the parameters' initial\n"
          "                      values (default 0; matters with --no-weights)\n"
          "  --eval              run in eval mode (dropout off, batch-norm running stats)\n"
          "  --weights F.safetensors\n"
          "                      load these weights instead of the manifest's (a state dict\n"
          "                      such as PyTorch's, or an nnm train checkpoint; strict)\n"
          "  --no-weights        do not load the manifest's weights: parameters keep the\n"
          "                      values the layers initialised them with\n"
          "  --device DEV        run on cpu (default), cuda or cuda:N: the model and its\n"
          "                      inputs are moved there (a machine without the device\n"
          "                      fails with the backend's message, nothing written)\n"
          "  --outputs N         number of outputs to ask for when the model's layer does\n"
          "                      not fix it (default: the graph's outputs, else 1)\n"
          "  --output F.safetensors\n"
          "                      also write every output in full to F (names output_0,\n"
          "                      output_1, ..., or the model's output names when it returns\n"
          "                      a dict; atomically), to compare with another framework\n"
          "  --plugins DIR       also load the plugins in DIR (repeatable)\n"
          "  -h, --help          show this help\n"
          "\n"
          "exit status: 0 success, 1 the model cannot be built or run, 2 usage error\n",
          f);
}

typedef struct run_input {
    const char *shape_spec; /* --input, or NULL */
    const char *file_spec;  /* --input-file, or NULL */
} run_input;

/* splitmix64: a small, good, seedable generator for the random inputs. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A random input of `spec`, uniform in [-1, 1). Returns NNM_OK, else the
 * message is printed and *out NULL. */
static int make_random(nnm_ctx *ctx, const char *spec, uint64_t *rng, nnm_tensor **out) {
    int64_t shape[NNM_MAX_DIMS];
    int ndim = cli_parse_shape(spec, shape);
    *out = NULL;
    if (ndim < 0)
        return cli_usage("run", "--input: bad shape '%s' (expected e.g. 1x4 or 1,4)", spec);
    /* 2^28 elements (1 GiB of f32, held twice while it is copied in): a
     * bigger random input is a typo, not a test, and must not take the
     * machine's memory */
    const uint64_t max_n = UINT64_C(1) << 28;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > max_n / (n ? n : 1))
            return cli_usage("run", "--input: shape '%s' has over 2^28 elements (1 GiB); give a smaller one or --input-file", spec);
        n *= (uint64_t)shape[i];
    }
    float *data = malloc((size_t)n * sizeof *data);
    if (!data) return cli_failf("run", "out of memory for an input of shape %s", spec);
    for (uint64_t i = 0; i < n; i++) /* 24 random bits: exact in f32 */
        data[i] = (float)((double)(splitmix64(rng) >> 40) * (2.0 / 16777216.0) - 1.0);
    nnm_status s = nnm_tensor_from_f32(ctx, ndim, shape, data, out);
    free(data);
    return s == NNM_OK ? 0 : cli_fail("run", ctx, s);
}

/* Reads the tensor `F[:NAME]`. Returns 0, else the message is printed and the
 * exit status returned. */
static int read_input(nnm_ctx *ctx, const char *spec, nnm_tensor **out) {
    char *path = NULL;
    const char *name = NULL;
    nnm_safetensors *st = NULL;
    nnm_st_entry e = {sizeof e};
    int r = CLI_EXIT_FAIL;
    nnm_status s;
    *out = NULL;
    path = malloc(strlen(spec) + 1);
    if (!path) return cli_failf("run", "out of memory");
    strcpy(path, spec);
    /* "F:NAME" unless F itself (colon and all) is a file. */
    char *colon = strrchr(path, ':');
    if (colon && access(path, F_OK) != 0) {
        *colon = '\0';
        name = colon + 1;
    }
    if ((s = nnm_safetensors_open(ctx, path, &st)) != NNM_OK) {
        r = cli_fail("run", ctx, s);
        goto done;
    }
    if (name) {
        s = nnm_safetensors_find(st, name, &e);
        if (s == NNM_E_NOT_FOUND) {
            r = cli_failf("run", "%s: no tensor named '%s'", path, name);
            goto done;
        }
    } else if (nnm_safetensors_count(st) != 1) {
        r = cli_failf("run", "--input-file: %s holds %" PRIu32 " tensors; name one with %s:NAME",
                      path, nnm_safetensors_count(st), path);
        goto done;
    } else {
        s = nnm_safetensors_entry(st, 0, &e);
    }
    if (s != NNM_OK) {
        r = cli_fail("run", ctx, s);
        goto done;
    }
    if (!cli_st_dtype_numeric(e.dtype_name)) {
        r = cli_failf("run", "%s: tensor '%s' has dtype %s, which nnm run cannot read", path,
                      e.name, e.dtype_name);
        goto done;
    }
    uint64_t n = 1;
    for (int32_t d = 0; d < e.ndim; d++) n *= (uint64_t)e.shape[d];
    if (!strcmp(e.dtype_name, "BOOL")) {
        /* Stays BOOL: a layer such as multihead_attention tells a bool mask
         * (true: ignore) from an additive f32 one by its dtype. */
        const nnm_device cpu = {NNM_DEVICE_CPU, 0};
        const nnm_dtype b8 = {NNM_DTYPE_BOOL, 8, 1};
        if ((s = nnm_tensor_new(ctx, cpu, b8, e.ndim, e.shape, out)) != NNM_OK) {
            r = cli_fail("run", ctx, s);
            goto done;
        }
        const nnm_tensor_desc *d = nnm_tensor_desc_get(*out);
        uint8_t *dst = (uint8_t *)d->data + d->byte_offset;
        for (uint64_t i = 0; i < n; i++) dst[i] = cli_st_elem(&e, i) != 0.0;
        r = CLI_EXIT_OK;
        goto done;
    }
    int is_float = !strcmp(e.dtype_name, "F64") || !strcmp(e.dtype_name, "F32") ||
                   !strcmp(e.dtype_name, "F16") || !strcmp(e.dtype_name, "BF16");
    size_t elem = is_float ? sizeof(float) : sizeof(int64_t);
    void *data = malloc(n ? (size_t)n * elem : 1);
    if (!data) {
        r = cli_failf("run", "%s: out of memory for tensor '%s'", path, e.name);
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (is_float)
            ((float *)data)[i] = (float)cli_st_elem(&e, i);
        else
            ((int64_t *)data)[i] = (int64_t)cli_st_elem(&e, i);
    }
    s = is_float ? nnm_tensor_from_f32(ctx, e.ndim, e.shape, data, out)
                 : nnm_tensor_from_i64(ctx, e.ndim, e.shape, data, out);
    free(data);
    r = s == NNM_OK ? CLI_EXIT_OK : cli_fail("run", ctx, s);
done:
    nnm_safetensors_close(st);
    free(path);
    return r;
}

/* How many outputs to ask the root for: the layer's fixed count, else the
 * length of a graph's "outputs", else `fallback`. */
static uint32_t output_count(nnm_ctx *ctx, nnm_manifest *mf, nnm_module *root, uint32_t fallback,
                             int explicit) {
    const char *type = nnm_module_type(root);
    const nnm_layer_vtable *vt = NULL;
    char request[256];
    snprintf(request, sizeof request, "%s", type);
    for (uint32_t i = 0; i < nnm_manifest_plugin_count(mf); i++) {
        const char *name = NULL, *range = NULL, *resolved = NULL;
        if (nnm_manifest_plugin(mf, i, &name, &range, &resolved) == NNM_OK && name && resolved &&
            strcmp(name, type) == 0)
            snprintf(request, sizeof request, "%s@%s", type, resolved);
    }
    if (nnm_layer_find(ctx, request, &vt) != NNM_OK && nnm_layer_find(ctx, type, &vt) != NNM_OK)
        vt = NULL;
    if (vt && vt->n_outputs >= 0 && !explicit) return (uint32_t)vt->n_outputs;
    if (explicit) return fallback;
    const char *const *outs = NULL;
    size_t n = 0;
    if (nnm_config_get_strs(nnm_module_config(root), "outputs", &outs, &n) == NNM_OK && n &&
        n <= RUN_MAX_IO)
        return (uint32_t)n;
    return fallback;
}

/* "output 0: ..." or, for a named output, "output 0 (out): ...". */
static void print_tensor(const char *what, uint32_t index, const char *name, nnm_tensor *t) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    char shape[256], dt[16], shown[CLI_TEXT_CAP];
    int64_t n = nnm_tensor_numel(t);
    printf("%s %" PRIu32 "%s%s%s: shape %s, %s, %" PRId64 " value%s\n", what, index,
           name ? " (" : "", name ? cli_text(name, shown, sizeof shown, 0) : "", name ? ")" : "",
           cli_shape_str(d->ndim, d->shape, shape, sizeof shape),
           cli_dtype_str(d->dtype, dt, sizeof dt), n, n == 1 ? "" : "s");
    if (d->dtype.code != NNM_DTYPE_FLOAT || d->dtype.bits != 32 || n <= 0) return;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v || nnm_tensor_to_f32(t, v, (size_t)n) != NNM_OK) {
        printf("  (values cannot be read)\n");
        free(v);
        return;
    }
    printf(" ");
    for (int64_t i = 0; i < n && i < RUN_SHOW; i++) printf(" %.6g", (double)v[i]);
    if (n > RUN_SHOW) printf(" ... (%" PRId64 " more)", n - RUN_SHOW);
    printf("\n");
    free(v);
}

int cmd_run(cli_env *env, int argc, char **argv) {
    static const char *cmd = "run";
    enum { OPT_INPUT, OPT_INPUT_FILE, OPT_SEED, OPT_EVAL, OPT_NO_WEIGHTS, OPT_WEIGHTS, OPT_OUTPUTS, OPT_OUTPUT,
           OPT_DEVICE };
    static const cli_opt opts[] = {{"input", 0, 1, OPT_INPUT},
                                   {"input-file", 0, 1, OPT_INPUT_FILE},
                                   {"seed", 0, 1, OPT_SEED},
                                   {"eval", 0, 0, OPT_EVAL},
                                   {"no-weights", 0, 0, OPT_NO_WEIGHTS},
                                   {"weights", 0, 1, OPT_WEIGHTS},
                                   {"outputs", 0, 1, OPT_OUTPUTS},
                                   {"output", 0, 1, OPT_OUTPUT},
                                   {"device", 0, 1, OPT_DEVICE},
                                   {NULL, 0, 0, 0}};
    cli_parser p;
    const char *path = NULL, *out_path = NULL, *weights = NULL;
    run_input inputs[RUN_MAX_IO];
    uint32_t n_in = 0, n_out = 1;
    uint64_t seed = 0, v;
    nnm_device device = {NNM_DEVICE_CPU, 0};
    int eval = 0, no_weights = 0, explicit_outputs = 0, r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_run(stdout); return CLI_EXIT_OK;
        case OPT_INPUT:
        case OPT_INPUT_FILE:
            if (n_in == RUN_MAX_IO) return cli_usage(cmd, "at most %d inputs", RUN_MAX_IO);
            if (r == OPT_INPUT) {
                int64_t shape[NNM_MAX_DIMS];
                if (cli_parse_shape(p.arg, shape) < 0)
                    return cli_usage(cmd, "--input: bad shape '%s' (expected e.g. 1x4 or 1,4)",
                                     p.arg);
            } else if (!p.arg[0]) {
                return cli_usage(cmd, "--input-file: empty file name");
            }
            inputs[n_in].shape_spec = r == OPT_INPUT ? p.arg : NULL;
            inputs[n_in].file_spec = r == OPT_INPUT_FILE ? p.arg : NULL;
            n_in++;
            break;
        case OPT_SEED:
            if (cli_parse_u64(p.arg, &seed))
                return cli_usage(cmd, "--seed: expected a number >= 0, got '%s'", p.arg);
            break;
        case OPT_EVAL: eval = 1; break;
        case OPT_NO_WEIGHTS: no_weights = 1; break;
        case OPT_WEIGHTS:
            if (!p.arg[0]) return cli_usage(cmd, "--weights: empty file name");
            weights = p.arg;
            break;
        case OPT_OUTPUTS:
            if (cli_parse_u64(p.arg, &v) || v < 1 || v > RUN_MAX_IO)
                return cli_usage(cmd, "--outputs: expected 1 to %d, got '%s'", RUN_MAX_IO, p.arg);
            n_out = (uint32_t)v;
            explicit_outputs = 1;
            break;
        case OPT_OUTPUT:
            if (!p.arg[0]) return cli_usage(cmd, "--output: empty file name");
            out_path = p.arg;
            break;
        case OPT_DEVICE:
            if (cli_parse_device(p.arg, &device))
                return cli_usage(cmd, "--device: expected cpu, cuda or cuda:N, got '%s'", p.arg);
            break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (!path) return cli_usage(cmd, "missing FILE");
    if (!n_in) return cli_usage(cmd, "no input: give --input SHAPE or --input-file F[:NAME]");
    if (weights && no_weights) return cli_usage(cmd, "--weights and --no-weights exclude each other");

    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, seed);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_manifest *mf = NULL;
    nnm_module *root = NULL;
    nnm_tensor *in[RUN_MAX_IO] = {0}, *out[RUN_MAX_IO] = {0};
    uint64_t rng = seed;
    nnm_status s;
    if (cli_manifest_open(ctx, cmd, path, no_weights || weights ? NNM_BUILD_NO_WEIGHTS : 0u, &mf, &root)) {
        r = CLI_EXIT_FAIL;
        goto done;
    }
    if (weights && (s = nnm_checkpoint_load(weights, root, NULL)) != NNM_OK) {
        r = cli_fail_file(cmd, weights, ctx, s);
        goto done;
    }
    if (eval && (s = nnm_module_train(root, 0)) != NNM_OK) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    if (device.type != NNM_DEVICE_CPU && (s = nnm_module_to(root, device)) != NNM_OK) {
        char dv[32];
        const char *m = nnm_ctx_errmsg(ctx);
        r = cli_failf(cmd, "--device %s: %s", cli_device_str(device, dv, sizeof dv),
                      m && m[0] ? m : nnm_status_str(s));
        goto done;
    }
    for (uint32_t i = 0; i < n_in; i++) {
        r = inputs[i].shape_spec ? make_random(ctx, inputs[i].shape_spec, &rng, &in[i])
                                 : read_input(ctx, inputs[i].file_spec, &in[i]);
        if (r != CLI_EXIT_OK) goto done;
        print_tensor("input", i, NULL, in[i]);
        if (device.type != NNM_DEVICE_CPU) { /* the inputs follow the model */
            nnm_tensor *d = NULL;
            if ((s = nnm_tensor_to(in[i], device, &d)) != NNM_OK) {
                r = cli_fail(cmd, ctx, s);
                goto done;
            }
            nnm_tensor_release(in[i]);
            in[i] = d;
        }
    }
    n_out = output_count(ctx, mf, root, n_out, explicit_outputs);
    if (n_out > RUN_MAX_IO) {
        r = cli_failf(cmd, "the model has %" PRIu32 " outputs; nnm run handles at most %d", n_out,
                      RUN_MAX_IO);
        goto done;
    }

    int was = nnm_grad_set_enabled(0);
    s = nnm_module_call(root, in, n_in, out, n_out);
    nnm_grad_set_enabled(was);
    if (s != NNM_OK) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    /* A model that returns a dict names its outputs: shown and written
     * under those names (unless --outputs asked for another count). */
    uint32_t n_names = 0;
    const char *const *out_names = nnm_module_output_names(root, &n_names);
    if (n_names != n_out) out_names = NULL;
    for (uint32_t i = 0; i < n_out; i++)
        print_tensor("output", i, out_names ? out_names[i] : NULL, out[i]);
    if (out_path) {
        char names[RUN_MAX_IO][16];
        const char *np[RUN_MAX_IO];
        for (uint32_t i = 0; i < n_out; i++) {
            snprintf(names[i], sizeof names[i], "output_%" PRIu32, i);
            np[i] = out_names ? out_names[i] : names[i];
        }
        if ((s = nnm_safetensors_write(ctx, out_path, n_out, np, out, 0, NULL)) != NNM_OK) {
            r = cli_fail(cmd, ctx, s);
            goto done;
        }
        char shown[CLI_TEXT_CAP];
        printf("wrote %" PRIu32 " output%s to %s\n", n_out, n_out == 1 ? "" : "s",
               cli_text(out_path, shown, sizeof shown, 0));
    }
    r = CLI_EXIT_OK;
done:
    for (uint32_t i = 0; i < RUN_MAX_IO; i++) {
        nnm_tensor_release(in[i]);
        nnm_tensor_release(out[i]);
    }
    nnm_module_release(root);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
