/* tools/nnm/cmd_plugins.c - `nnm plugins`: every plugin record of a fresh
 * context (default discovery plus --plugins), loaded or failed, and why. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

void usage_plugins(FILE *f) {
    fputs("usage: nnm plugins [--plugins DIR]...\n"
          "\n"
          "Lists the plugins a context finds: those in $NNM_PLUGIN_PATH, beside\n"
          "libnnmod, in the installed plugin directory and in each --plugins DIR.\n"
          "Each line: name, plugin ABI, layers and backends it provides, and the file;\n"
          "a plugin that failed to load is listed with the reason. Below each plugin,\n"
          "one line per layer: its qualified name (domain.name) and version, and\n"
          "the plain name that reaches it, or why none does (docs/abi.md, Names).\n"
          "\n"
          "options:\n"
          "  --plugins DIR also load the plugins in DIR (repeatable)\n"
          "  -h, --help    show this help\n"
          "\n"
          "exit status: 0 success (even when some plugins failed), 1 failure, 2 usage error\n",
          f);
}

int cmd_plugins(cli_env *env, int argc, char **argv) {
    static const char *cmd = "plugins";
    cli_parser p;
    int r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, NULL)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_plugins(stdout); return CLI_EXIT_OK;
        default: return cli_usage(cmd, "unexpected argument '%s'", p.arg);
        }
    }
    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    uint32_t n = nnm_plugin_count(ctx), n_failed = 0;
    for (uint32_t i = 0; i < n; i++) {
        nnm_plugin_info info = {sizeof info};
        nnm_status s = nnm_plugin_info_get(ctx, i, &info);
        if (s != NNM_OK) {
            r = cli_fail(cmd, ctx, s);
            nnm_ctx_free(ctx);
            return r;
        }
        /* names, paths and messages come from plugin files: escaped */
        char name[128], text[CLI_TEXT_CAP];
        if (info.status == NNM_OK) {
            printf("%-16s ABI %u.%u  %" PRIu32 " layer%s, %" PRIu32 " backend%s  %s\n",
                   cli_text(info.name ? info.name : "?", name, sizeof name, 0),
                   (unsigned)info.abi_major, (unsigned)info.abi_minor, info.n_layers,
                   info.n_layers == 1 ? "" : "s", info.n_backends, info.n_backends == 1 ? "" : "s",
                   cli_text(info.path, text, sizeof text, 0));
            for (uint32_t j = 0; j < info.n_layers; j++) {
                nnm_layer_info li = {sizeof li};
                if (nnm_plugin_layer_info(ctx, i, j, &li) != NNM_OK) continue;
                char qname[160], plain[80], version[48];
                snprintf(version, sizeof version, "%u.%u.%u", (unsigned)li.version_major,
                         (unsigned)li.version_minor, (unsigned)li.version_patch);
                cli_text(li.qualified_name, qname, sizeof qname, 0);
                cli_text(li.name, plain, sizeof plain, 0);
                const char *how;
                if (li.flags & NNM_LAYER_INFO_BUILTIN) how = "plain name: ";
                else if (li.flags & NNM_LAYER_INFO_PLAIN) how = "plain name (no domain): ";
                else if (li.flags & NNM_LAYER_INFO_SHADOWED) how = "no plain name: nnmod's library has ";
                else how = "qualified only; not ";
                printf("    %-32s %-9s %s%s\n", qname, version, how, plain);
            }
        } else {
            n_failed++;
            printf("%-16s FAILED (%s): %s\n", cli_text(info.name ? info.name : "-", name, sizeof name, 0),
                   nnm_status_name(info.status), cli_text(info.error, text, sizeof text, 0));
        }
    }
    printf("%" PRIu32 " plugin%s, %" PRIu32 " failed\n", n, n == 1 ? "" : "s", n_failed);
    nnm_ctx_free(ctx);
    return CLI_EXIT_OK;
}
