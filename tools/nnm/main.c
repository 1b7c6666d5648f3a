/* tools/nnm/main.c - the nnm command-line tool: global options and dispatch
 * to one file per subcommand (cmd_*.c). Reference: docs/nnm.md. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(cli_env *env, int argc, char **argv);
    void (*usage)(FILE *f);
} command;

static const command commands[] = {
    {"validate", cmd_validate, usage_validate},
    {"convert", cmd_convert, usage_convert},
    {"inspect", cmd_inspect, usage_inspect},
    {"run", cmd_run, usage_run},
    {"weights", cmd_weights, usage_weights},
    {"plugins", cmd_plugins, usage_plugins},
    {"train", cmd_train, usage_train},
    {"eval", cmd_eval, usage_eval},
    {"predict", cmd_predict, usage_predict},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static void usage_main(FILE *f) {
    fputs("usage: nnm [--plugins DIR]... COMMAND [ARGS]...\n"
          "       nnm --version | --help | help COMMAND\n"
          "\n"
          "Validate, convert, inspect and run nnmod model manifests, and examine\n"
          "safetensors weight files.\n"
          "\n"
          "commands:\n"
          "  validate FILE...        parse and build manifests; report the first error of each\n"
          "  convert IN OUT          convert a manifest between JSON and msgpack\n"
          "  inspect FILE            module tree, parameters, plugins, weights (--dot: Graphviz)\n"
          "  run FILE                build a model and run one forward pass on an input\n"
          "  weights inspect FILE    list the tensors and metadata of a safetensors file\n"
          "  weights diff A B        compare two safetensors files\n"
          "  plugins                 list the plugins found, loaded or not\n"
          "  train MANIFEST          train a model on a dataset (docs/training.md)\n"
          "  eval MANIFEST           loss, accuracy, confusion matrix of trained weights\n"
          "  predict MANIFEST        top-k classes of inputs, with probabilities\n"
          "  help COMMAND            show a command's help\n"
          "\n"
          "options:\n"
          "  --plugins DIR   also load the plugins in DIR, or the plugin file DIR names\n"
          "                  (repeatable; also accepted after COMMAND)\n"
          "  --version       print the versions of nnm, libnnmod and the plugin ABI\n"
          "  -h, --help      show this help\n"
          "\n"
          "Plugins are also found in $NNM_PLUGIN_PATH, beside libnnmod and in the\n"
          "installed plugin directory.\n"
          "\n"
          "exit status: 0 success, 1 failure, 2 usage error\n"
          "(weights diff: 0 same, 1 different, 2 trouble)\n",
          f);
}

static int print_version(void) {
    uint16_t major = 0, minor = 0;
    nnm_abi_version(&major, &minor);
    printf("nnm %s (libnnmod %s, plugin ABI %u.%u)\n", NNM_VERSION_STRING, nnm_version(),
           (unsigned)major, (unsigned)minor);
    return CLI_EXIT_OK;
}

/* nnm help [COMMAND [SUBCOMMAND]] */
static int help(int argc, char **argv, int first) {
    if (first >= argc) {
        usage_main(stdout);
        return CLI_EXIT_OK;
    }
    const command *c = find_command(argv[first]);
    if (!c) return cli_usage(NULL, "help: unknown command '%s'", argv[first]);
    if (c->usage == usage_weights && first + 1 < argc) {
        if (strcmp(argv[first + 1], "inspect") == 0) {
            usage_weights_inspect(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[first + 1], "diff") == 0) {
            usage_weights_diff(stdout);
            return CLI_EXIT_OK;
        }
        return cli_usage("weights", "unknown command '%s'", argv[first + 1]);
    }
    if (first + 1 < argc)
        return cli_usage(NULL, "help: unexpected argument '%s'", argv[first + 1]);
    c->usage(stdout);
    return CLI_EXIT_OK;
}

static int run(cli_env *env, int argc, char **argv) {
    int i = 1;
    /* Global options, up to the command. */
    while (i < argc) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_main(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) return print_version();
        if (strcmp(a, "--plugins") == 0 || strncmp(a, "--plugins=", 10) == 0) {
            const char *dir = a[9] == '=' ? a + 10 : NULL;
            if (!dir) {
                if (i + 1 >= argc) return cli_usage(NULL, "option '--plugins' needs a value");
                dir = argv[++i];
            }
            if (!dir[0]) return cli_usage(NULL, "option '--plugins' needs a directory");
            if (cli_env_add_plugin_dir(env, dir)) return cli_failf("", "out of memory");
            i++;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0') return cli_usage(NULL, "unknown option '%s'", a);
        break;
    }
    if (i >= argc) return cli_usage(NULL, "no command given");
    if (strcmp(argv[i], "help") == 0) return help(argc, argv, i + 1);
    const command *c = find_command(argv[i]);
    if (!c) return cli_usage(NULL, "unknown command '%s'", argv[i]);
    return c->run(env, argc - i, argv + i);
}

int main(int argc, char **argv) {
    cli_env env = {0};
    env.trouble_status = CLI_EXIT_FAIL;
    int rc = run(&env, argc, argv);
    cli_env_free(&env);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        /* A full disk or a closed pipe must not pass for success. */
        fprintf(stderr, "nnm: error writing to standard output\n");
        if (rc == CLI_EXIT_OK || env.trouble_status != CLI_EXIT_FAIL) rc = env.trouble_status;
    }
    return rc;
}
