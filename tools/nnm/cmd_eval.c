/* tools/nnm/cmd_eval.c - `nnm eval MANIFEST --weights W`: the loss, accuracy
 * and confusion matrix of a model on the test split (eval mode, no grad). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train_common.h"

void usage_eval(FILE *f) {
    fputs("usage: nnm eval [options] MANIFEST --weights W.safetensors\n"
          "\n"
          "Builds the manifest's model, loads W (a checkpoint of nnm train or a plain\n"
          "state dict) and evaluates it on the test data of the manifest's \"training\"\n"
          "section (or --test) in eval mode with gradients off: the loss, the accuracy\n"
          "and, for class targets, the confusion matrix (class names from the\n"
          "manifest's metadata \"class_names\", comma-separated, when present). The\n"
          "input normalisation recorded in a checkpoint of nnm train is applied. The\n"
          "last line is 'test accuracy: NN.NN%'.\n"
          "\n"
          "options:\n"
          "  --weights FILE        the weights (required)\n"
          "  --test FILE[,FILE]    test data: INPUTS.idx[.gz],TARGETS.idx[.gz] or one\n"
          "                        .safetensors file\n"
          "  --limit N             the first N samples only\n"
          "  --batch-size N        (64)\n"
          "  --plugins DIR         also load the plugins in DIR (repeatable)\n"
          "  -h, --help            show this help\n"
          "\n"
          "The other settings of nnm train (--loss, --input-shape, --mean, ...) are taken\n"
          "too; see nnm train --help.\n"
          "\n"
          "exit status: 0 success, 1 failure, 2 usage error\n",
          f);
}

/* The class names of the manifest's metadata "class_names" ("a,b,c"): a
 * malloc'd copy split in place into names[]; NULL when absent. */
static char *class_names(const nnm_manifest *mf, const char **names, int64_t n) {
    for (uint32_t i = 0; i < nnm_manifest_metadata_count(mf); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_manifest_metadata(mf, i, &k, &v) || strcmp(k, "class_names")) continue;
        char *copy = malloc(strlen(v) + 1);
        if (!copy) return NULL;
        strcpy(copy, v);
        char *s = copy;
        for (int64_t c = 0; c < n; c++) {
            names[c] = s && *s ? s : NULL;
            char *comma = s ? strchr(s, ',') : NULL;
            if (comma) *comma = '\0';
            s = comma ? comma + 1 : NULL;
        }
        return copy;
    }
    return NULL;
}

/* Prints a name cut to about 12 bytes, every control byte (C0, DEL, C1)
 * escaped: class names are text from a file. */
static void print_name(const char *s, int width) {
    char buf[16];
    printf("%-*s", width, cli_text(s, buf, sizeof buf, 0));
}

int cmd_eval(cli_env *env, int argc, char **argv) {
    static const char *cmd = "eval";
    enum { OPT_WEIGHTS, OPT_LIMIT, OPT_PARAMS };
    cli_opt opts[64];
    static const cli_opt own[] = {{"weights", 0, 1, OPT_WEIGHTS}, {"limit", 0, 1, OPT_LIMIT}};
    size_t n_own = sizeof own / sizeof own[0], n_par = 0;
    const cli_opt *par = train_params_opts(OPT_PARAMS, &n_par);
    memcpy(opts, own, sizeof own);
    memcpy(opts + n_own, par, (n_par + 1) * sizeof *par);
    const char *path = NULL, *weights = NULL;
    uint64_t limit = 0;
    int flag_ids[256], n_flags = 0, r;
    const char *flag_vals[256];
    cli_parser p;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_eval(stdout); return CLI_EXIT_OK;
        case OPT_WEIGHTS: weights = p.arg; break;
        case OPT_LIMIT:
            if (cli_parse_u64(p.arg, &limit) || limit < 1)
                return cli_usage(cmd, "--limit: expected a number >= 1, got '%s'", p.arg);
            break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default:
            if (r >= OPT_PARAMS && n_flags < 256) {
                flag_ids[n_flags] = r;
                flag_vals[n_flags++] = p.arg;
                break;
            }
            return cli_usage(cmd, "too many options");
        }
    }
    if (!path) return cli_usage(cmd, "missing MANIFEST");
    if (!weights) return cli_usage(cmd, "missing --weights FILE");

    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_manifest *mf = NULL;
    nnm_module *model = NULL, *loss = NULL;
    nnm_dataset *ds = NULL;
    nnm_loader *ld = NULL;
    int64_t *confusion = NULL;
    char *names_buf = NULL;
    const char **names = NULL;
    train_params tp;
    nnm_status s;
    r = CLI_EXIT_FAIL;
    if (cli_manifest_open(ctx, cmd, path, 0, &mf, NULL)) goto done;
    if (train_params_init(&tp, cmd, path, mf)) goto done;
    if (train_params_from_weights(ctx, cmd, &tp, weights)) goto done;
    for (int i = 0; i < n_flags; i++)
        if (train_params_flag(&tp, cmd, par[flag_ids[i] - OPT_PARAMS].name, flag_vals[i])) {
            r = CLI_EXIT_USAGE;
            goto done;
        }
    if ((s = nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &model))) {
        r = cli_fail_file(cmd, path, ctx, s);
        goto done;
    }
    if ((s = nnm_checkpoint_load(weights, model, NULL))) {
        r = cli_fail_file(cmd, weights, ctx, s);
        goto done;
    }
    if (train_model_to_device(ctx, cmd, &tp, model)) goto done; /* --device, "device" */
    if (train_open_data(ctx, cmd, &tp, &tp.test, &ds)) goto done;
    if (limit) nnm_dataset_limit(ds, (int64_t)limit);
    if (!tp.have_std && tp.normalize) {
        /* no recorded transform: the training split's statistics, as nnm train computes them */
        nnm_dataset *train_ds = NULL;
        if (train_open_data(ctx, cmd, &tp, &tp.train, &train_ds)) goto done;
        int bad = train_fill_stats(ctx, cmd, &tp, train_ds);
        nnm_dataset_free(train_ds);
        if (bad) goto done;
    }
    nnm_loader_options lo = train_loader_options(&tp, 0);
    if ((s = nnm_loader_new(ds, &lo, &ld))) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    if (train_make_loss(ctx, cmd, &tp, &loss)) goto done;
    int64_t classes = 0;
    if (train_check_fit(ctx, cmd, &tp, model, loss, ds, "test", &classes)) goto done;
    if (classes > 0) {
        /* classes comes from the model's output: the product is checked */
        int64_t cells = 0;
        if (cli_mul_i64(classes, classes, &cells) || cells > ((int64_t)1 << 27)) {
            r = cli_failf(cmd, "the model's output has %" PRId64 " classes: a confusion matrix "
                          "of them would not fit (at most 11585 classes)", classes);
            goto done;
        }
        confusion = calloc((size_t)cells, sizeof *confusion);
        names = calloc((size_t)classes, sizeof *names);
        if (!confusion || !names) {
            r = cli_failf(cmd, "out of memory");
            goto done;
        }
        names_buf = class_names(mf, names, classes);
    }
    eval_result ev;
    if (train_evaluate(ctx, cmd, model, loss, ld, classes, confusion, &ev)) goto done;
    printf("samples: %" PRId64 "\n", ev.samples);
    if (ev.ignored)
        printf("ignored: %" PRId64 " samples have target %d (ignore_index): in neither the loss "
               "nor the accuracy\n", ev.ignored, TRAIN_IGNORE_INDEX);
    printf("loss: %.6f\n", ev.loss);
    if (classes > 0) {
        printf("confusion matrix (rows: true class, columns: predicted class):\n");
        printf("%-16s", "");
        for (int64_t c = 0; c < classes; c++) printf(" %6" PRId64, c);
        printf("\n");
        for (int64_t t = 0; t < classes; t++) {
            char label[24];
            snprintf(label, sizeof label, "%3" PRId64 " ", t);
            printf("%s", label);
            print_name(names[t] ? names[t] : "", 12);
            for (int64_t c = 0; c < classes; c++) printf(" %6" PRId64, confusion[t * classes + c]);
            printf("\n");
        }
        printf("test accuracy: %.2f%%\n", 100 * ev.accuracy);
    }
    r = CLI_EXIT_OK;
done:
    free(confusion);
    free(names);
    free(names_buf);
    nnm_loader_free(ld);
    nnm_dataset_free(ds);
    nnm_module_release(loss);
    nnm_module_release(model);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
