/* tools/nnm/cli.h - what the nnm subcommands share: option parsing, the
 * three ways a command ends (success, usage error, failure), the context every
 * command makes, and small formatting helpers.
 *
 * nnm reaches libnnmod only through abi/nnmod/nnmod.h.
 *
 * Exit statuses (docs/nnm.md): 0 success, 1 failure (a message from the
 * library on stderr), 2 usage error. `weights diff` follows diff(1): 0 the
 * files are the same, 1 they differ, 2 trouble.
 */
#ifndef NNM_TOOLS_CLI_H
#define NNM_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nnmod/nnmod.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* What the global options set, handed to every command. */
typedef struct cli_env {
    const char **plugin_dirs; /* --plugins DIR, in order; the strings are argv's */
    size_t n_plugin_dirs;
    size_t cap_plugin_dirs;
    /* The exit status for trouble the command cannot report itself (stdout
     * could not be written): 1, or 2 for `weights diff` (1 means "differ"). */
    int trouble_status;
} cli_env;

/* Appends a --plugins directory. Returns 0, or -1 when out of memory. */
int cli_env_add_plugin_dir(cli_env *env, const char *dir);
void cli_env_free(cli_env *env);

/* ---- option parsing -------------------------------------------------- */

/* One option a command takes: "--name" (and "-c" when short_name is set),
 * with a value ("--name VALUE" or "--name=VALUE") when has_arg. */
typedef struct cli_opt {
    const char *name;
    char short_name;
    int has_arg;
    int id; /* >= 0, returned by cli_next */
} cli_opt;

/* cli_next's results that are not an option id. */
#define CLI_END (-1)        /* no arguments left */
#define CLI_POSITIONAL (-2) /* p->arg is a positional argument */
#define CLI_ERROR (-3)      /* a usage error; the message was printed */
#define CLI_HELP (-4)       /* -h or --help */

typedef struct cli_parser {
    const char *cmd; /* "validate", "weights diff": for messages */
    cli_env *env;    /* --plugins DIR is accepted by every command */
    int argc;
    char **argv;
    int i;               /* next argument */
    int only_positional; /* after "--" */
    const char *arg;     /* the value of the last option or positional */
} cli_parser;

/* Starts parsing argv[first..argc). */
void cli_parser_init(cli_parser *p, const char *cmd, cli_env *env, int argc, char **argv,
                     int first);
/* The next option (its id, with its value in p->arg), positional argument,
 * CLI_HELP, CLI_END or CLI_ERROR (already reported with cli_usage). "--plugins
 * DIR" is consumed here. opts ends with an entry whose name is NULL. */
int cli_next(cli_parser *p, const cli_opt *opts);

/* ---- ending a command ------------------------------------------------- */

/* Prints "nnm CMD: MESSAGE" and "try 'nnm CMD --help'" to stderr; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Prints "nnm CMD: <nnm_ctx_errmsg(ctx)>" to stderr; returns 1. When the
 * context has no message, the status's description is printed instead. */
int cli_fail(const char *cmd, const nnm_ctx *ctx, nnm_status st);
/* Like cli_fail for an error about the file `path`: "nnm CMD: PATH: MESSAGE",
 * without repeating PATH when the message already starts with it. */
int cli_fail_file(const char *cmd, const char *path, const nnm_ctx *ctx, nnm_status st);
/* Prints "nnm CMD: MESSAGE" to stderr; returns 1. */
int cli_failf(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Prints "nnm CMD: warning: MESSAGE" to stderr. */
void cli_warn(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* ---- the context ------------------------------------------------------- */

/* Flags for cli_ctx_new. */
#define CLI_CTX_NO_DISCOVERY 1u /* only the --plugins directories */

/* Makes a context (seed 0: the library's default) and loads every --plugins
 * directory. On failure prints the message and returns NULL. */
nnm_ctx *cli_ctx_new(const cli_env *env, const char *cmd, uint32_t flags, uint64_t seed);

/* Loads the manifest at `path` (JSON or msgpack) and, when root is not NULL,
 * builds it with nnm_manifest_build(flags). Returns 0, or prints the error
 * (cli_fail_file) and returns 1 with *mf and *root NULL. */
int cli_manifest_open(nnm_ctx *ctx, const char *cmd, const char *path, uint32_t flags,
                      nnm_manifest **mf, nnm_module **root);

/* ---- parsing values --------------------------------------------------- */

/* A whole decimal unsigned integer (no sign, no junk). Returns 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);
/* A device as PyTorch writes it: "cpu" (or "cpu:0"), "cuda" (cuda:0) or
 * "cuda:N" with N from 0 to CLI_MAX_DEVICE_ID. Returns 0 or -1. Whether the
 * machine has that device is the runtime's to say (NNM_E_NO_DEVICE). */
#define CLI_MAX_DEVICE_ID 1023
int cli_parse_device(const char *s, nnm_device *out);
/* "cpu" or "cuda:N"; truncated to cap. Returns buf. */
const char *cli_device_str(nnm_device d, char *buf, size_t cap);
/* A whole finite floating-point number. Returns 0 or -1. */
int cli_parse_double(const char *s, double *out);
/* A shape "1x4", "1,4", "2 x 3" or "[2, 3]": 1 to NNM_MAX_DIMS positive
 * dimensions. Returns the number of dimensions, or -1. */
int cli_parse_shape(const char *s, int64_t shape[NNM_MAX_DIMS]);

/* ---- checked arithmetic on untrusted sizes ------------------------------ */

/* *out = a * b; returns -1 (out untouched) when a or b is negative or the
 * product does not fit in an int64. */
int cli_mul_i64(int64_t a, int64_t b, int64_t *out);
/* The product of shape[0..ndim) (1 for ndim 0) into *out; -1 when a dimension
 * is negative or the product does not fit in an int64. */
int cli_shape_numel(int32_t ndim, const int64_t *shape, int64_t *out);

/* ---- formatting -------------------------------------------------------- */

/* "[2, 3]" (an empty shape is "[]"); truncated to cap. Returns buf. */
const char *cli_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t cap);
/* "f32", "bf16", "i64", "bool", ... for a runtime dtype. */
const char *cli_dtype_str(nnm_dtype dt, char *buf, size_t cap);
/* Writes s as a JSON string literal (quotes included): control characters
 * (C0, DEL, C1) as \u00XX, bytes that are not UTF-8 as \ufffd. */
void cli_json_str(FILE *f, const char *s);

/* Text from plugins, manifests and weights files, made safe to print:
 * control characters (C0, DEL, and C1 in UTF-8) and bytes that are not
 * UTF-8 become \xNN, so no terminal control sequence is ever emitted raw,
 * and text that does not fit in cap - 1 bytes is cut with "..." (never
 * inside a character). flags: CLI_TEXT_NEWLINES lets '\n' through (for
 * multi-line text such as print(model)). s NULL is "". Returns buf. */
#define CLI_TEXT_NEWLINES 1u
#define CLI_TEXT_CAP 1024 /* the usual buffer: long enough for a message */
const char *cli_text(const char *s, char *buf, size_t cap, unsigned flags);

/* ---- safetensors elements -------------------------------------------- */

/* 1 when a safetensors dtype name can be read as numbers (F64, F32, F16, BF16,
 * I64..I8, U64..U8, BOOL). */
int cli_st_dtype_numeric(const char *dtype_name);
/* Element i of an entry of a numeric dtype as a double (unaligned reads are
 * fine). */
double cli_st_elem(const nnm_st_entry *e, uint64_t i);
/* Bytes per element of a safetensors dtype name; 0 when unknown. */
size_t cli_st_elem_size(const char *dtype_name);

/* ---- the commands -------------------------------------------------- */

/* argv[0] is the command's name; each returns the process exit status. */
int cmd_validate(cli_env *env, int argc, char **argv);
int cmd_convert(cli_env *env, int argc, char **argv);
int cmd_inspect(cli_env *env, int argc, char **argv);
int cmd_run(cli_env *env, int argc, char **argv);
int cmd_weights(cli_env *env, int argc, char **argv);
int cmd_plugins(cli_env *env, int argc, char **argv);
int cmd_train(cli_env *env, int argc, char **argv);
int cmd_eval(cli_env *env, int argc, char **argv);
int cmd_predict(cli_env *env, int argc, char **argv);

/* Each command's --help text, for `nnm help CMD` too. */
void usage_validate(FILE *f);
void usage_convert(FILE *f);
void usage_inspect(FILE *f);
void usage_run(FILE *f);
void usage_weights(FILE *f);
void usage_weights_inspect(FILE *f);
void usage_weights_diff(FILE *f);
void usage_plugins(FILE *f);
void usage_train(FILE *f);
void usage_eval(FILE *f);
void usage_predict(FILE *f);

#endif /* NNM_TOOLS_CLI_H */
