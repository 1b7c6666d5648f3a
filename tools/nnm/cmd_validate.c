/* tools/nnm/cmd_validate.c - `nnm validate FILE...`: parse each manifest and
 * build its module tree (weights too with --weights), reporting the first
 * error of each file. */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

void usage_validate(FILE *f) {
    fputs("usage: nnm validate [--weights] [-q] FILE...\n"
          "\n"
          "Parses each manifest (JSON or msgpack, told apart by the first byte),\n"
          "checks it against the schema and the loaded plugins, and builds its module\n"
          "tree on the meta device (shapes, no parameter memory), with the checks\n"
          "every command makes (names, --max-param-bytes). Prints 'FILE: ok (N modules, P parameters)' for each valid file; for\n"
          "an invalid one, the error on stderr, starting with the path inside the\n"
          "document ('root.children[2].config.out_features: ...'). Every file is\n"
          "checked even after one fails.\n"
          "\n"
          "options:\n"
          "  --weights     also load the weights the manifest names (sha256 checked\n"
          "                when given, strict keys and shapes)\n"
          "  -q, --quiet   print nothing for valid files\n"
          "  --plugins DIR also load the plugins in DIR (repeatable)\n"
          "  --max-param-bytes N\n"
          "                the most bytes of parameters and buffers a manifest may\n"
          "                ask for (default 16 GiB; any command takes it)\n"
          "  -h, --help    show this help\n"
          "\n"
          "exit status: 0 every file is valid, 1 at least one is not, 2 usage error\n",
          f);
}

static nnm_status count_module(void *user, const char *name, nnm_module *m) {
    (void)name;
    (void)m;
    (*(uint64_t *)user)++;
    return NNM_OK;
}

/* Validates one file; returns 0 when valid, else prints the error and
 * returns 1. */
static int validate_one(nnm_ctx *ctx, const char *path, int weights, int quiet) {
    nnm_manifest *mf = NULL;
    nnm_module *root = NULL;
    uint64_t n_modules = 0;
    if (cli_manifest_open(ctx, "validate", path, weights ? 0u : NNM_BUILD_META, &mf, &root))
        return 1;
    nnm_status s = nnm_module_named_modules(root, count_module, &n_modules);
    if (s != NNM_OK) {
        cli_fail_file("validate", path, ctx, s);
        nnm_module_release(root);
        nnm_manifest_free(mf);
        return 1;
    }
    if (!quiet) {
        int64_t n_params = nnm_module_num_params(root);
        char shown[CLI_TEXT_CAP];
        printf("%s: ok (%" PRIu64 " module%s, %" PRId64 " parameter%s)\n",
               cli_text(path, shown, sizeof shown, 0), n_modules,
               n_modules == 1 ? "" : "s", n_params, n_params == 1 ? "" : "s");
    }
    nnm_module_release(root);
    nnm_manifest_free(mf);
    return 0;
}

int cmd_validate(cli_env *env, int argc, char **argv) {
    static const char *cmd = "validate";
    enum { OPT_WEIGHTS, OPT_QUIET };
    static const cli_opt opts[] = {
        {"weights", 0, 0, OPT_WEIGHTS}, {"quiet", 'q', 0, OPT_QUIET}, {NULL, 0, 0, 0}};
    cli_parser p;
    int weights = 0, quiet = 0, n_files = 0, r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    /* First pass: options (they may come after the files). */
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_validate(stdout); return CLI_EXIT_OK;
        case OPT_WEIGHTS: weights = 1; break;
        case OPT_QUIET: quiet = 1; break;
        case CLI_POSITIONAL: n_files++; break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (!n_files) return cli_usage(cmd, "missing FILE");

    cli_env pass2 = {0}; /* the plugin dirs were collected in the first pass */
    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    int failed = 0;
    cli_parser_init(&p, cmd, &pass2, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END)
        if (r == CLI_POSITIONAL) failed |= validate_one(ctx, p.arg, weights, quiet);
    cli_env_free(&pass2);
    nnm_ctx_free(ctx);
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
