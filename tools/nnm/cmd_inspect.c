/* tools/nnm/cmd_inspect.c - `nnm inspect FILE`: a manifest's module tree (like
 * print(model)), parameter count, plugins and weights reference; `--dot`
 * draws the tree and its data flow for Graphviz instead. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_inspect(FILE *f) {
    fputs("usage: nnm inspect [--dot] [--weights] FILE\n"
          "\n"
          "Builds the manifest's module tree (without its weights unless --weights)\n"
          "and prints it like PyTorch's print(model), the total number of parameters,\n"
          "the plugins the manifest requires with their version range and the\n"
          "version each resolved to, and the weights reference if there is one.\n"
          "\n"
          "options:\n"
          "  --dot         print a Graphviz digraph instead: one node per module\n"
          "                (label 'name\\ntype'), containers as clusters, the chain of\n"
          "                a sequential's children and the edges of a graph module's\n"
          "                DAG (its inputs, nodes and outputs). Render with\n"
          "                'nnm inspect --dot FILE | dot -Tsvg > model.svg'.\n"
          "  --weights     also load the weights (checks them like 'nnm validate --weights')\n"
          "  --plugins DIR also load the plugins in DIR (repeatable)\n"
          "  -h, --help    show this help\n"
          "\n"
          "exit status: 0 success, 1 the manifest is invalid, 2 usage error\n",
          f);
}

/* ------------------------------------------------------------------------ */
/* Graphviz                                                                  */
/* ------------------------------------------------------------------------ */

/* Writes s inside a dot double-quoted string. */
static void dot_esc(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++) {
        char c = s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if ((unsigned char)c >= 0x20 && c != 0x7f)
            fputc(c, f);
    }
}

/* The node a module's data enters (its own node) and the one it leaves
 * from (the last child of a sequential, the single output of a graph). */
typedef struct dot_ends {
    char entry[32];
    char exit[40];
} dot_ends;

/* Every module drawn so far with its ends, so a graph node naming a
 * descendant ("heads.0") finds where to draw its edges. */
typedef struct dot_drawn {
    const nnm_module *m;
    dot_ends ends;
} dot_drawn;

typedef struct dot_state {
    FILE *f;
    unsigned next_id;
    dot_drawn *drawn;
    size_t n_drawn, cap_drawn;
} dot_state;

static int remember(dot_state *ds, const nnm_module *m, const dot_ends *ends) {
    if (ds->n_drawn == ds->cap_drawn) {
        size_t cap = ds->cap_drawn ? 2 * ds->cap_drawn : 64;
        dot_drawn *p = realloc(ds->drawn, cap * sizeof *p);
        if (!p) return -1;
        ds->drawn = p;
        ds->cap_drawn = cap;
    }
    ds->drawn[ds->n_drawn].m = m;
    ds->drawn[ds->n_drawn++].ends = *ends;
    return 0;
}

/* The ends of g's descendant at the dotted path [name, name + n); NULL if
 * there is none (or it was not drawn). */
static const dot_ends *descendant_ends(const dot_state *ds, nnm_module *g, const char *name,
                                       size_t n) {
    char path[256];
    if (n == 0 || n >= sizeof path) return NULL;
    memcpy(path, name, n);
    path[n] = 0;
    const nnm_module *d = nnm_module_get(g, path);
    for (size_t i = 0; d && i < ds->n_drawn; i++)
        if (ds->drawn[i].m == d) return &ds->drawn[i].ends;
    return NULL;
}

static void indent(FILE *f, int depth) {
    for (int i = 0; i < depth; i++) fputs("  ", f);
}

static int emit_module(dot_state *ds, nnm_module *m, int depth, dot_ends *ends);

/* Trims whitespace from both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n) {
    while (*n && strchr(" \t\n\r\f\v", **s)) (*s)++, (*n)--;
    while (*n && strchr(" \t\n\r\f\v", (*s)[*n - 1])) (*n)--;
}

/* Index of the first c in [s, s + n) outside backticks, or n. */
static size_t find_top(const char *s, size_t n, char c) {
    int quoted = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '`')
            quoted = !quoted;
        else if (!quoted && s[i] == c)
            return i;
    }
    return n;
}

/* Decodes the graph's name syntax in [s, s + n) (trimmed): components bare
 * or between backticks (a doubled backtick is one), joined by '.'. The
 * graph checked the syntax when it was built; out has n + 1 bytes. */
static void decode_name(const char *s, size_t n, char *out) {
    size_t o = 0;
    trim(&s, &n);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '`') {
            out[o++] = s[i];
            continue;
        }
        for (i++; i < n; i++) {
            if (s[i] == '`') {
                if (i + 1 < n && s[i + 1] == '`') {
                    out[o++] = '`';
                    i++;
                    continue;
                }
                break;
            }
            out[o++] = s[i];
        }
    }
    out[o] = 0;
}

/* One node of a graph's config: its name (decoded), the module it calls
 * (decoded path) and the text of its REFs. */
typedef struct dot_node {
    char *name, *path;
    const char *args;
    size_t args_len;
} dot_node;

/* What a graph's REFs may name: inputs, its own tensors, nodes. */
typedef struct dot_graph {
    const char *const *inputs;
    size_t n_inputs;
    char **tensors;
    size_t n_tensors;
    dot_node *nodes;
    size_t n_nodes;
    uint32_t mask;
    uint32_t *hash; /* node index + 1 by name */
} dot_graph;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Splits entry `spec` ("PATH: REFS" or "NODE = PATH(REFS)"); 0, or -1
 * (out of memory, or a shape the graph would have refused). */
static int dot_node_parse(const char *spec, dot_node *nd) {
    size_t n = strlen(spec), eq = find_top(spec, n, '=');
    nd->name = malloc(n + 1);
    nd->path = malloc(n + 1);
    if (!nd->name || !nd->path) return -1;
    if (eq == n) { /* v1 */
        size_t c = find_top(spec, n, ':');
        if (c == n) return -1;
        decode_name(spec, c, nd->name);
        strcpy(nd->path, nd->name);
        nd->args = spec + c + 1;
        nd->args_len = n - c - 1;
        return 0;
    }
    decode_name(spec, eq, nd->name);
    const char *rhs = spec + eq + 1;
    size_t rn = n - eq - 1, open = find_top(rhs, rn, '(');
    if (open == rn) return -1;
    decode_name(rhs, open, nd->path);
    const char *args = rhs + open + 1;
    size_t an = rn - open - 1;
    trim(&args, &an);
    if (an == 0 || args[an - 1] != ')') return -1;
    nd->args = args;
    nd->args_len = an - 1;
    return 0;
}

/* Resolves a REF ("NAME" or "NAME:K") to the dot node it comes from; *port
 * receives K (or NULL). Returns 0, or -1 when unknown. */
static int graph_ref(const dot_state *ds, const dot_graph *dg, const char *ref, size_t n,
                     nnm_module *g, const char *gid, char *src, size_t cap, const char **port,
                     size_t *port_len) {
    size_t colon = find_top(ref, n, ':');
    *port = NULL;
    *port_len = 0;
    if (colon < n) {
        *port = ref + colon + 1;
        *port_len = n - colon - 1;
        trim(port, port_len);
    }
    char *name = malloc(colon + 1);
    if (!name) return -1;
    decode_name(ref, colon, name);
    int rc = -1;
    for (size_t i = 0; rc && i < dg->n_inputs; i++)
        if (strcmp(dg->inputs[i], name) == 0) {
            snprintf(src, cap, "%s_in%zu", gid, i);
            rc = 0;
        }
    for (size_t i = 0; rc && i < dg->n_tensors; i++)
        if (strcmp(dg->tensors[i], name) == 0) {
            snprintf(src, cap, "%s_t%zu", gid, i);
            rc = 0;
        }
    for (uint32_t k = hash_str(name) & dg->mask; rc && dg->hash && dg->hash[k];
         k = (k + 1) & dg->mask) {
        const dot_node *nd = &dg->nodes[dg->hash[k] - 1];
        if (strcmp(nd->name, name) != 0) continue;
        const dot_ends *e = descendant_ends(ds, g, nd->path, strlen(nd->path));
        if (e) {
            snprintf(src, cap, "%s", e->exit);
            rc = 0;
        }
        break;
    }
    free(name);
    return rc;
}

/* One edge from REF to `dst`. Unknown references get a node of their own,
 * drawn dashed, so the picture shows the mistake. */
static void graph_edge(dot_state *ds, const dot_graph *dg, int depth, const char *ref, size_t n,
                       nnm_module *g, const char *gid, const char *dst) {
    char src[64];
    const char *port;
    size_t port_len;
    trim(&ref, &n);
    if (graph_ref(ds, dg, ref, n, g, gid, src, sizeof src, &port, &port_len)) {
        snprintf(src, sizeof src, "%s_unknown%u", gid, ds->next_id++);
        indent(ds->f, depth);
        fprintf(ds->f, "%s [label=\"", src);
        dot_esc(ds->f, ref, n);
        fprintf(ds->f, "\\n(unknown)\", shape=plaintext, fontcolor=red];\n");
        port = NULL;
    }
    indent(ds->f, depth);
    fprintf(ds->f, "%s -> %s", src, dst);
    if (port && port_len) {
        fprintf(ds->f, " [label=\"");
        dot_esc(ds->f, port, port_len);
        fprintf(ds->f, "\"]");
    }
    fprintf(ds->f, ";\n");
}

/* The name of each entry of a graph's "parameters" or "buffers" ("NAME:
 * [shape] ..."), appended to dg->tensors (decoded). */
static void graph_tensors(dot_graph *dg, const char *const *entries, size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(entries[i]), c = find_top(entries[i], len, ':');
        char *name = malloc(c + 1);
        if (!name) continue;
        decode_name(entries[i], c, name);
        dg->tensors[dg->n_tensors++] = name;
    }
}

/* The DAG of a `graph` module from its config: "inputs" (names),
 * "parameters" and "buffers" (tensors it owns), "nodes" ("PATH: REF, REF"
 * or "NODE = PATH(REF, REF)": edges from each REF into the module PATH, so
 * a module called by two nodes has the edges of both) and "outputs"
 * (REFs). */
static void emit_graph_edges(dot_state *ds, nnm_module *g, int depth, const char *gid,
                             dot_ends *ends) {
    static const char *const default_inputs[] = {"x"}; /* the graph's default */
    const nnm_config *cfg = nnm_module_config(g);
    const char *const *inputs = NULL, *const *nodes = NULL, *const *outputs = NULL;
    const char *const *params = NULL, *const *buffers = NULL;
    size_t n_inputs = 0, n_nodes = 0, n_outputs = 0, n_params = 0, n_buffers = 0;
    if (nnm_config_get_strs(cfg, "inputs", &inputs, &n_inputs) != NNM_OK) {
        inputs = default_inputs;
        n_inputs = 1;
    }
    if (nnm_config_get_strs(cfg, "nodes", &nodes, &n_nodes) != NNM_OK) n_nodes = 0;
    if (nnm_config_get_strs(cfg, "outputs", &outputs, &n_outputs) != NNM_OK) n_outputs = 0;
    if (nnm_config_get_strs(cfg, "parameters", &params, &n_params) != NNM_OK) n_params = 0;
    if (nnm_config_get_strs(cfg, "buffers", &buffers, &n_buffers) != NNM_OK) n_buffers = 0;

    dot_graph dg = {inputs, n_inputs, NULL, 0, NULL, 0, 0, NULL};
    uint32_t cap = 8;
    while (cap < 2 * n_nodes) cap *= 2;
    dg.mask = cap - 1;
    dg.hash = calloc(cap, sizeof *dg.hash);
    dg.nodes = calloc(n_nodes ? n_nodes : 1, sizeof *dg.nodes);
    dg.tensors = calloc(n_params + n_buffers ? n_params + n_buffers : 1, sizeof *dg.tensors);
    if (!dg.hash || !dg.nodes || !dg.tensors) goto out; /* out of memory: no edges */
    graph_tensors(&dg, params, n_params);
    graph_tensors(&dg, buffers, n_buffers);
    for (size_t i = 0; i < n_nodes; i++) {
        dot_node *nd = &dg.nodes[dg.n_nodes++];
        if (dot_node_parse(nodes[i], nd)) {
            nd->args = NULL; /* the builder refuses these; nothing to draw */
            continue;
        }
        uint32_t k = hash_str(nd->name) & dg.mask;
        while (dg.hash[k]) k = (k + 1) & dg.mask;
        dg.hash[k] = (uint32_t)i + 1;
    }

    for (size_t i = 0; i < n_inputs; i++) {
        indent(ds->f, depth);
        fprintf(ds->f, "%s_in%zu [label=\"", gid, i);
        dot_esc(ds->f, inputs[i], strlen(inputs[i]));
        fprintf(ds->f, "\", shape=ellipse];\n");
        indent(ds->f, depth);
        fprintf(ds->f, "%s -> %s_in%zu [style=dashed, arrowhead=none];\n", gid, gid, i);
    }
    for (size_t i = 0; i < dg.n_tensors; i++) {
        indent(ds->f, depth);
        fprintf(ds->f, "%s_t%zu [label=\"", gid, i);
        dot_esc(ds->f, dg.tensors[i], strlen(dg.tensors[i]));
        fprintf(ds->f, "\", shape=note];\n");
    }
    for (size_t i = 0; i < dg.n_nodes; i++) {
        const dot_node *nd = &dg.nodes[i];
        if (!nd->args) continue;
        const dot_ends *e = descendant_ends(ds, g, nd->path, strlen(nd->path));
        if (!e) continue;
        const char *r = nd->args;
        size_t left = nd->args_len;
        const char *t = r;
        size_t tn = left;
        trim(&t, &tn);
        while (tn) { /* no REFs: "k:" or "k = c()" */
            size_t comma = find_top(r, left, ',');
            graph_edge(ds, &dg, depth, r, comma, g, gid, e->entry);
            if (comma == left) break;
            r += comma + 1;
            left -= comma + 1;
        }
    }
    const char *const *out_names = NULL;
    size_t n_out_names = 0;
    if (nnm_config_get_strs(cfg, "output_names", &out_names, &n_out_names) != NNM_OK ||
        n_out_names != n_outputs)
        out_names = NULL;
    for (size_t i = 0; i < n_outputs; i++) {
        char dst[48];
        snprintf(dst, sizeof dst, "%s_out%zu", gid, i);
        indent(ds->f, depth);
        fprintf(ds->f, "%s [label=\"output %zu", dst, i);
        if (out_names) {
            fputs(" (", ds->f);
            dot_esc(ds->f, out_names[i], strlen(out_names[i]));
            fputc(')', ds->f);
        }
        fprintf(ds->f, "\", shape=ellipse];\n");
        graph_edge(ds, &dg, depth, outputs[i], strlen(outputs[i]), g, gid, dst);
    }
    if (n_outputs == 1) snprintf(ends->exit, sizeof ends->exit, "%s_out0", gid);
out:
    for (size_t i = 0; i < dg.n_nodes; i++) {
        free(dg.nodes[i].name);
        free(dg.nodes[i].path);
    }
    for (size_t i = 0; i < dg.n_tensors; i++) free(dg.tensors[i]);
    free(dg.nodes);
    free(dg.tensors);
    free(dg.hash);
}

static int emit_module(dot_state *ds, nnm_module *m, int depth, dot_ends *ends) {
    FILE *f = ds->f;
    unsigned id = ds->next_id++;
    uint32_t n = nnm_module_child_count(m);
    const char *name = nnm_module_name(m), *type = nnm_module_type(m);
    snprintf(ends->entry, sizeof ends->entry, "m%u", id);
    snprintf(ends->exit, sizeof ends->exit, "m%u", id);

    if (n == 0) {
        indent(f, depth);
        fprintf(f, "m%u [label=\"", id);
        dot_esc(f, name[0] ? name : "model", strlen(name[0] ? name : "model"));
        fputs("\\n", f);
        dot_esc(f, type, strlen(type));
        fputs("\"];\n", f);
        return remember(ds, m, ends);
    }

    dot_ends *child = calloc(n, sizeof *child);
    if (!child) return -1;
    indent(f, depth);
    fprintf(f, "subgraph cluster_m%u {\n", id);
    indent(f, depth + 1);
    fputs("style=rounded; color=gray60; label=\"\";\n", f);
    indent(f, depth + 1);
    fprintf(f, "m%u [label=\"", id);
    dot_esc(f, name[0] ? name : "model", strlen(name[0] ? name : "model"));
    fputs("\\n", f);
    dot_esc(f, type, strlen(type));
    fputs("\", shape=folder, style=bold];\n", f);
    for (uint32_t i = 0; i < n; i++) {
        if (emit_module(ds, nnm_module_child(m, i), depth + 1, &child[i])) {
            free(child);
            return -1;
        }
    }
    if (strcmp(type, "sequential") == 0) {
        indent(f, depth + 1);
        fprintf(f, "m%u -> %s", id, child[0].entry);
        for (uint32_t i = 1; i < n; i++) {
            fprintf(f, ";\n");
            indent(f, depth + 1);
            fprintf(f, "%s -> %s", child[i - 1].exit, child[i].entry);
        }
        fprintf(f, ";\n");
        snprintf(ends->exit, sizeof ends->exit, "%s", child[n - 1].exit);
    } else if (strcmp(type, "graph") == 0) {
        emit_graph_edges(ds, m, depth + 1, ends->entry, ends);
    } else {
        /* Other containers (module_list, module_dict, ...) hold their
         * children without a fixed data flow: show that they hold them. */
        for (uint32_t i = 0; i < n; i++) {
            indent(f, depth + 1);
            fprintf(f, "m%u -> %s [style=dotted, arrowhead=none];\n", id, child[i].entry);
        }
    }
    indent(f, depth);
    fputs("}\n", f);
    free(child);
    return remember(ds, m, ends);
}

static int print_dot(nnm_module *root, const char *path) {
    dot_state ds = {stdout, 0, NULL, 0, 0};
    dot_ends ends;
    fputs("digraph \"", stdout);
    dot_esc(stdout, path, strlen(path));
    fputs("\" {\n  node [shape=box, fontname=\"Helvetica\"];\n"
          "  edge [fontname=\"Helvetica\", fontsize=10];\n",
          stdout);
    int rc = emit_module(&ds, root, 1, &ends);
    free(ds.drawn);
    if (rc) return -1;
    fputs("}\n", stdout);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Text                                                                      */
/* ------------------------------------------------------------------------ */

static int print_text(nnm_manifest *mf, nnm_module *root, const char *path) {
    int64_t len = nnm_module_repr(root, NULL, 0);
    if (len < 0) return -1;
    char *repr = malloc((size_t)len + 1);
    if (!repr) return -1;
    if (nnm_module_repr(root, repr, (size_t)len + 1) != len) {
        free(repr);
        return -1;
    }
    char shown[CLI_TEXT_CAP];
    printf("%s\n", cli_text(path, shown, sizeof shown, 0));
    /* the layers' own text is in there (names, extra_repr): escaped, not cut */
    char *safe = malloc((size_t)len * 4 + 1);
    if (!safe) {
        free(repr);
        return -1;
    }
    fputs(cli_text(repr, safe, (size_t)len * 4 + 1, CLI_TEXT_NEWLINES), stdout);
    if (!len || repr[len - 1] != '\n') fputc('\n', stdout);
    free(safe);
    free(repr);

    printf("parameters: %" PRId64 "\n", nnm_module_num_params(root));
    uint32_t n = nnm_manifest_plugin_count(mf);
    printf("plugins:%s\n", n ? "" : " none");
    size_t name_w = 0, range_w = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < n; i++) {
            const char *name = NULL, *range = NULL, *resolved = NULL;
            if (nnm_manifest_plugin(mf, i, &name, &range, &resolved) != NNM_OK) return -1;
            name = name ? name : "?";
            range = range ? range : "*";
            if (pass == 0) {
                if (strlen(name) > name_w) name_w = strlen(name);
                if (strlen(range) > range_w) range_w = strlen(range);
            } else {
                char ns[256], rs[256], vs[128];
                printf("  %-*s  %-*s  -> %s\n", (int)name_w, cli_text(name, ns, sizeof ns, 0),
                       (int)range_w, cli_text(range, rs, sizeof rs, 0),
                       cli_text(resolved ? resolved : "(unresolved)", vs, sizeof vs, 0));
            }
        }
    }
    const char *wpath = nnm_manifest_weights_path(mf), *sha = nnm_manifest_weights_sha256(mf);
    char wshown[CLI_TEXT_CAP], sshown[160];
    if (!wpath)
        printf("weights: none\n");
    else if (sha)
        printf("weights: %s (sha256 %s)\n", cli_text(wpath, wshown, sizeof wshown, 0),
               cli_text(sha, sshown, sizeof sshown, 0));
    else
        printf("weights: %s\n", cli_text(wpath, wshown, sizeof wshown, 0));
    return 0;
}

int cmd_inspect(cli_env *env, int argc, char **argv) {
    static const char *cmd = "inspect";
    enum { OPT_DOT, OPT_WEIGHTS };
    static const cli_opt opts[] = {
        {"dot", 0, 0, OPT_DOT}, {"weights", 0, 0, OPT_WEIGHTS}, {NULL, 0, 0, 0}};
    cli_parser p;
    const char *path = NULL;
    int dot = 0, weights = 0, r;
    cli_parser_init(&p, cmd, env, argc, argv, 1);
    while ((r = cli_next(&p, opts)) != CLI_END) {
        switch (r) {
        case CLI_ERROR: return CLI_EXIT_USAGE;
        case CLI_HELP: usage_inspect(stdout); return CLI_EXIT_OK;
        case OPT_DOT: dot = 1; break;
        case OPT_WEIGHTS: weights = 1; break;
        case CLI_POSITIONAL:
            if (path) return cli_usage(cmd, "unexpected argument '%s'", p.arg);
            path = p.arg;
            break;
        default: return cli_usage(cmd, "internal: unhandled option");
        }
    }
    if (!path) return cli_usage(cmd, "missing FILE");

    nnm_ctx *ctx = cli_ctx_new(env, cmd, 0, 0);
    if (!ctx) return CLI_EXIT_FAIL;
    nnm_manifest *mf = NULL;
    nnm_module *root = NULL;
    if (cli_manifest_open(ctx, cmd, path, weights ? 0u : NNM_BUILD_META, &mf, &root)) {
        r = CLI_EXIT_FAIL;
    } else if (dot ? print_dot(root, path) : print_text(mf, root, path)) {
        r = cli_failf(cmd, "out of memory");
    } else {
        r = CLI_EXIT_OK;
    }
    nnm_module_release(root);
    nnm_manifest_free(mf);
    nnm_ctx_free(ctx);
    return r;
}
