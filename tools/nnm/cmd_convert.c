/* tools/nnm/cmd_convert.c - `nnm convert IN OUT`: a manifest between JSON and
 * msgpack, parsed and validated on the way (nnm_manifest_load, then
 * nnm_manifest_save, which writes atomically). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_convert(FILE *f) {
    fputs("usage: nnm convert [--to json|msgpack] IN OUT\n"
          "\n"
          "Reads the manifest IN (JSON or msgpack, told apart by the first byte),\n"
          "validates it like 'nnm validate' does (without building it) and writes it\n"
          "to OUT, atomically. OUT's format comes from its name: '.json' is JSON,\n"
          "anything else msgpack. The output is canonical: the same manifest always\n"
          "gives the same bytes, so JSON -> msgpack -> JSON is a fixed point.\n"
          "\n"
          "A relative weights path is kept as written; it is relative to the\n"
          "manifest's directory, so a warning is printed when OUT is in another\n"
          "directory than IN.\n"
          "\n"
          "options:\n"
          "  --to FORMAT   json or msgpack, whatever OUT's name says\n"
          "  --plugins DIR also load the plugins in DIR (repeatable)\n"
          "  -h, --help    show this help\n"
          "\n"
          "exit status: 0 converted, 1 IN is invalid or OUT cannot be written, 2 usage error\n",
          f);
}

/* The directory part of path, resolved ("." for a bare name). Returns a
 * malloc'd string, or NULL when it cannot be resolved. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = malloc(2);
        if (dir) strcpy(dir, ".");
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (!dir) return NULL;
    char *real = realpath(dir, NULL);
    free(dir);
    return real;
}

int cmd_convert(cli_env *env, int argc, char **argv) {
    static const char *cmd = "convert";
    enum { OPT_TO };
    static const cli_opt opts[] = {{"to", 0, 1, OPT_TO}, {NULL, 0, 0, 0}};
    cli_parser p;
    const char *paths[2] = {NULL, NULL};
    int n_paths = 0, format = NNM_MANIFEST_AUTO, r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_convert(stdout); return CLI_EXIT_OK;
        case OPT_TO:
            if (strcmp(p.arg, "json") == 0)
                format = NNM_MANIFEST_JSON;
            else if (strcmp(p.arg, "msgpack") == 0)
                format = NNM_MANIFEST_MSGPACK;
            else
                return cli_usage(cmd, "--to: expected json or msgpack, got '%s'", p.arg);
            break;
        case CLI_POSITIONAL:
            if (n_paths == 2) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            paths[n_paths++] = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (n_paths < 2) return cli_usage(cmd, "expected IN and OUT");
    if (format == NNM_MANIFEST_AUTO) {
        size_t n = strlen(paths[1]);
        format = n >= 5 && strcmp(paths[1] + n - 5, ".json") == 0 ? NNM_MANIFEST_JSON
                                                                  : NNM_MANIFEST_MSGPACK;
    }

    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_manifest *mf = NULL;
    if (cli_manifest_open(ctx, cmd, paths[0], 0, &mf, NULL)) {
        nnm_ctx_free(ctx);
        return CLI_EXIT_FAIL;
    }
    const char *wpath = nnm_manifest_weights_path(mf);
    if (wpath && wpath[0] != '/') {
        char *din = dir_of(paths[0]), *dout = dir_of(paths[1]);
        if (din && dout && strcmp(din, dout) != 0)
            cli_warn(cmd,
                     "the weights path '%s' is relative to the manifest's directory; "
                     "%s is in another directory than %s",
                     wpath, paths[1], paths[0]);
        free(din);
        free(dout);
    }
    nnm_status s = nnm_manifest_save(mf, paths[1], format);
    r = s == NNM_OK ? CLI_EXIT_OK : cli_fail(cmd, ctx, s);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
