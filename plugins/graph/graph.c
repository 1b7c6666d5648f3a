/* plugins/graph/graph.c - the "graph" container: a directed acyclic graph of
 * named child modules with named edges, for residual connections and for
 * layers with several inputs or outputs (a ResNet basic block, an encoder
 * block, a two-headed model).
 *
 * ---------------------------------------------------------------------------
 * SPEC (docs/manifest.md copies this section)
 * ---------------------------------------------------------------------------
 * Config:
 *   inputs   list of strings, default ["x"]. The graph's input names, in the
 *            order forward receives them. Each matches [A-Za-z_][A-Za-z0-9_]*
 *            and is unique; at most NNM_MAX_IO (16).
 *   nodes    list of strings, required. One entry per node:
 *                "NAME: REF, REF, ..."     ("NAME:" is a node with no inputs)
 *            NAME names the module the node calls: one of the graph module's
 *            CHILDREN (children are attached separately: by the manifest
 *            builder, or with nnm_module_add_child), or a dotted path to a
 *            DESCENDANT below a child, as a PyTorch forward calls into its
 *            containers: "heads.0" (self.heads[0], a module_list's child),
 *            "tasks.cls" (self.tasks["cls"], a module_dict's), "enc.0.fc"
 *            (any depth). Each component matches [A-Za-z0-9_]+. NAME is
 *            unique and is not a graph input's name. The REFs are the node's
 *            inputs, in order, each one of
 *                NAME      output 0 of node NAME, or the graph input NAME
 *                NAME:K    output K (decimal, K < 16) of node NAME (a graph
 *                          input has only output 0: x:0 is x); NAME may be
 *                          dotted: tasks.cls:1 is output 1 of node tasks.cls
 *            Whitespace around tokens is ignored. A node may be listed before
 *            the nodes it reads. At most 16384 nodes. A node nothing reads
 *            still runs (its outputs are dropped at once).
 *   outputs  list of REFs, default: output 0 of the LAST node listed. The
 *            graph returns these tensors, in order (at most NNM_MAX_IO). A graph
 *            input may be returned (as a new reference to the same tensor).
 * Arity: n_inputs and n_outputs are NNM_ARITY_ANY; forward checks that it
 * gets len(inputs) inputs and is asked for len(outputs) outputs.
 *
 * Execution order: a topological order computed at create, stable: it is
 * the listed order when that is valid; otherwise a node is pulled forward to
 * run just before the first node that reads it (a depth-first post-order:
 * nodes in listed order, each node's REFs left to right).
 *
 * create validates everything the config alone can tell and fails with
 * NNM_E_INVALID and a message naming the entry:
 *   config.inputs[1]: duplicate input 'x'
 *   config.inputs[0]: invalid name '1x' (use [A-Za-z_][A-Za-z0-9_]*)
 *   config.nodes[1]: expected "name: input, input, ...", got "fc1 x"
 *                    (also for a bad path: "heads..0: x", ".a: x", "a.: x")
 *   config.nodes[1]: bad input 'x:' (expected NAME or NAME:K, K < 16)
 *   config.nodes[2]: duplicate node 'relu'
 *   config.nodes[0]: node 'x' has the name of a graph input
 *   config.nodes[3]: unknown input 'fc9'
 *   config.nodes[1]: 'x:1' refers to output 1 of graph input 'x', which is one tensor
 *   config.nodes: cycle through 'a' -> 'b' -> 'a'
 *   config.outputs[0]: unknown node 'z'
 *   config.outputs[0]: bad reference 'a:' (expected NAME or NAME:K, K < 16)
 *   config.outputs: empty (a graph returns at least one tensor)
 *   config.nodes: empty, and no config.outputs to return
 *
 * A dotted node needs the host slots descendant_info and descendant_call
 * (ABI 1.2); create refuses one on a host without them with NNM_E_VERSION:
 *   config.nodes[2]: 'heads.0' names a descendant, which needs the host slots
 *   descendant_info and descendant_call (this host, ABI 1.2, lacks them)
 *
 * finalize (nnm_module_finalize, the manifest builder), or the first forward
 * when finalize was never called or children were added since, maps each
 * plain node to the child of the same name (host->child_info), looks each
 * dotted node up (host->descendant_info), and fails with NNM_E_INVALID on:
 *   config.nodes[3]: no child module named 'conv9'
 *   config.nodes[3]: no descendant module named 'heads.5'
 *   child 'foo' is not a node of the graph (config.nodes has no entry "foo: ..."
 *     nor "foo.NAME: ...")
 *   config.nodes[2]: child 'fc1' takes 1 input, the node lists 2
 *   config.nodes[2]: descendant 'heads.0' takes 1 input, the node lists 2
 *   config.nodes[4]: 'fork:2': child 'fork' has 2 outputs  (or config.outputs[i];
 *     "descendant" for a dotted node)
 * Every child must be a node, or the first component of a dotted node (a
 * module_list or module_dict holding the descendants the graph calls), or
 * both. A module of fixed arity is called with its n_outputs outputs; one
 * with NNM_ARITY_ANY outputs with (the highest K referenced) + 1 of them.
 *
 * forward runs the nodes in order: a plain node through host->child_call
 * (by index), a dotted one through host->descendant_call (by path, resolved
 * at each call, without allocating); either way through the central call
 * path, so the called module's hooks, mode and profiling apply. It keeps
 * each node's outputs until the last node reading them has run, then
 * releases them. Graph inputs are borrowed. On any failure every
 * intermediate is released and out[] is left NULL; the message is the
 * failing module's, with its module path.
 *
 * State: the parsed config and the child mapping (self); the children belong
 * to the module tree. Scratch arrays for one forward are allocated by the
 * mapping, so a steady-state forward allocates nothing here.
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_MAX_NODES 16384u
#define GRAPH_MAX_IO NNM_MAX_IO /* entries of config.inputs and config.outputs: one call's */
#define GRAPH_MAX_PORT (NNM_MAX_IO - 1u) /* largest K in NAME:K: a call has at most NNM_MAX_IO outputs */
#define GRAPH_REF_INPUT 0x80000000u
#define GRAPH_NONE 0xffffffffu
#define GRAPH_KEEP 0xffffffffu /* last_use of a node the graph returns */
#define GRAPH_QUOTE 80         /* most characters of an entry quoted in a message */

/* One input of a node, or one output of the graph. */
typedef struct graph_ref {
    uint32_t src;  /* node index (listed order), or GRAPH_REF_INPUT | input index */
    uint32_t port; /* output of the node; 0 for a graph input */
    int has_port;  /* written as NAME:K */
} graph_ref;

typedef struct graph_node {
    char *name;                 /* a child's name, or a dotted path to a descendant */
    uint32_t head_len;          /* length of the first component (all of a plain name) */
    int is_path;                /* dotted: called with descendant_call */
    uint32_t first_ref, n_refs; /* into graph_state.refs */
    uint32_t n_used_out;        /* highest port read + 1; 0 when nothing reads it */
    uint32_t step;              /* position in the execution order */
    uint32_t last_use;          /* last step reading it (its own when unread), or GRAPH_KEEP */
    /* set by graph_map */
    uint32_t child;             /* child index; GRAPH_NONE for a dotted node */
    uint32_t n_call_out;        /* outputs requested from the child */
    uint32_t slot;              /* first entry of its outputs in vals */
} graph_node;

typedef struct graph_state {
    uint32_t n_inputs;
    char **inputs;
    uint32_t n_nodes;
    graph_node *nodes;   /* listed order */
    uint32_t *order;     /* execution order: node indices */
    uint32_t n_refs;
    graph_ref *refs;
    uint32_t max_refs;   /* most inputs of one node */
    uint32_t n_outputs;
    graph_ref *outputs;
    uint32_t hash_mask;
    uint32_t *hash;      /* node index + 1; 0 is empty */
    uint32_t *heads;     /* the same for the first components of dotted nodes:
                          * the first dotted node with that component */
    /* the child mapping (graph_map) */
    int mapped;
    uint32_t mapped_children;
    uint32_t n_slots;
    nnm_tensor **vals;   /* n_slots + 1: every node's outputs during a forward */
    nnm_tensor **args;   /* max_refs + 1: one node's inputs */
    uint32_t busy;       /* forwards running (a hook may re-enter) */
} graph_state;

/* ------------------------------------------------------------------------ */
/* Text                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct span {
    const char *p;
    size_t n;
} span;

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_digit(char c) {
    return c >= '0' && c <= '9';
}
static int is_alpha_(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static span span_of(const char *s) {
    span r = {s, strlen(s)};
    return r;
}

static span trim(span s) {
    while (s.n > 0 && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_space(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* Index of the first `c` in s, or s.n. */
static size_t find_char(span s, char c) {
    const char *q = s.n ? memchr(s.p, c, s.n) : NULL;
    return q ? (size_t)(q - s.p) : s.n;
}

/* A child name: [A-Za-z0-9_]+. */
static int is_node_name(span s) {
    if (s.n == 0)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!is_alpha_(s.p[i]) && !is_digit(s.p[i]))
            return 0;
    return 1;
}

/* A node name: components [A-Za-z0-9_]+ joined by single dots ("fc1",
 * "heads.0", "tasks.cls"). */
static int is_node_path(span s) {
    size_t start = 0;
    for (size_t i = 0; i <= s.n; i++)
        if (i == s.n || s.p[i] == '.') {
            if (!is_node_name((span){s.p + start, i - start}))
                return 0;
            start = i + 1;
        }
    return 1;
}

/* A graph input name: [A-Za-z_][A-Za-z0-9_]*. */
static int is_input_name(span s) {
    return is_node_name(s) && !is_digit(s.p[0]);
}

static int span_is(span s, const char *z) {
    return strlen(z) == s.n && memcmp(s.p, z, s.n) == 0;
}

/* For "%.*s": at most GRAPH_QUOTE characters. */
static int qlen(span s) {
    return s.n > GRAPH_QUOTE ? GRAPH_QUOTE : (int)s.n;
}

static char *dup_span(span s) {
    char *r = malloc(s.n + 1);
    if (r != NULL) {
        memcpy(r, s.p, s.n);
        r[s.n] = '\0';
    }
    return r;
}

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

static void graph_destroy(void *self) {
    graph_state *s = self;
    if (s == NULL)
        return;
    for (uint32_t i = 0; s->inputs != NULL && i < s->n_inputs; i++)
        free(s->inputs[i]);
    for (uint32_t i = 0; s->nodes != NULL && i < s->n_nodes; i++)
        free(s->nodes[i].name);
    free(s->inputs);
    free(s->nodes);
    free(s->order);
    free(s->refs);
    free(s->outputs);
    free(s->hash);
    free(s->heads);
    free(s->vals);
    free(s->args);
    free(s);
}

static uint32_t hash_span(span s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < s.n; i++) {
        h ^= (unsigned char)s.p[i];
        h *= 16777619u;
    }
    return h;
}

/* The node named `name`, or GRAPH_NONE. */
static uint32_t node_find(const graph_state *s, span name) {
    if (s->hash == NULL)
        return GRAPH_NONE;
    for (uint32_t i = hash_span(name) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->hash[i];
        if (v == 0)
            return GRAPH_NONE;
        if (span_is(name, s->nodes[v - 1].name))
            return v - 1;
    }
}

/* Adds node `index` (its name already set); 0 if the name is taken. */
static int node_insert(graph_state *s, uint32_t index) {
    span name = span_of(s->nodes[index].name);
    for (uint32_t i = hash_span(name) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->hash[i];
        if (v == 0) {
            s->hash[i] = index + 1;
            return 1;
        }
        if (span_is(name, s->nodes[v - 1].name))
            return 0;
    }
}

static span node_head(const graph_node *nd) {
    return (span){nd->name, nd->head_len};
}

/* The first dotted node whose first component is `head`, or GRAPH_NONE. */
static uint32_t head_find(const graph_state *s, span head) {
    if (s->heads == NULL)
        return GRAPH_NONE;
    for (uint32_t i = hash_span(head) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->heads[i];
        if (v == 0)
            return GRAPH_NONE;
        span h = node_head(&s->nodes[v - 1]);
        if (h.n == head.n && memcmp(h.p, head.p, h.n) == 0)
            return v - 1;
    }
}

/* Records the first component of dotted node `index` (once per component). */
static void head_insert(graph_state *s, uint32_t index) {
    span head = node_head(&s->nodes[index]);
    for (uint32_t i = hash_span(head) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->heads[i];
        if (v == 0) {
            s->heads[i] = index + 1;
            return;
        }
        span h = node_head(&s->nodes[v - 1]);
        if (h.n == head.n && memcmp(h.p, head.p, h.n) == 0)
            return;
    }
}

/* The graph input named `name`, or GRAPH_NONE. */
static uint32_t input_find(const graph_state *s, span name) {
    for (uint32_t i = 0; i < s->n_inputs; i++)
        if (span_is(name, s->inputs[i]))
            return i;
    return GRAPH_NONE;
}

/* ------------------------------------------------------------------------ */
/* create: parsing and validation                                            */
/* ------------------------------------------------------------------------ */

/* Splits a trimmed REF into its name and optional ":K". 0 on bad syntax. */
static int ref_parse(span tok, span *name, int *has_port, uint32_t *port) {
    size_t c = find_char(tok, ':');
    *name = trim((span){tok.p, c});
    *has_port = c < tok.n;
    *port = 0;
    if (!is_node_path(*name))
        return 0;
    if (!*has_port)
        return 1;
    span k = trim((span){tok.p + c + 1, tok.n - c - 1});
    if (k.n == 0 || k.n > 4)
        return 0;
    uint32_t v = 0;
    for (size_t i = 0; i < k.n; i++) {
        if (!is_digit(k.p[i]))
            return 0;
        v = v * 10 + (uint32_t)(k.p[i] - '0');
    }
    if (v > GRAPH_MAX_PORT)
        return 0;
    *port = v;
    return 1;
}

/* Resolves a REF token of entry `where`[index] ("nodes" or "outputs"). */
static nnm_status ref_resolve(nnm_env *env, graph_state *s, const char *where, uint32_t index,
                              span tok, graph_ref *out) {
    const nnm_host *h = env->host;
    span name;
    int has_port;
    uint32_t port;
    if (!ref_parse(tok, &name, &has_port, &port))
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: bad %s '%.*s' (expected NAME or NAME:K, K <= %u)",
                            where, (unsigned)index,
                            strcmp(where, "nodes") == 0 ? "input" : "reference", qlen(tok), tok.p,
                            GRAPH_MAX_PORT);
    uint32_t in = input_find(s, name);
    if (in != GRAPH_NONE) {
        if (port != 0)
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: '%.*s' refers to output %u of graph input '%s', "
                                "which is one tensor",
                                where, (unsigned)index, qlen(tok), tok.p, (unsigned)port,
                                s->inputs[in]);
        *out = (graph_ref){GRAPH_REF_INPUT | in, 0, has_port};
        return NNM_OK;
    }
    uint32_t node = node_find(s, name);
    if (node == GRAPH_NONE)
        return h->set_error(env, NNM_E_INVALID, "config.%s[%u]: unknown %s '%.*s'", where,
                            (unsigned)index, strcmp(where, "nodes") == 0 ? "input" : "node",
                            qlen(name), name.p);
    *out = (graph_ref){node, port, has_port};
    if (s->nodes[node].n_used_out < port + 1)
        s->nodes[node].n_used_out = port + 1;
    return NNM_OK;
}

/* The list getters have no default: a missing optional key reads as
 * NNM_E_NOT_FOUND with a message, which must not outlive a create that
 * succeeds. */
static void graph_clear_error(nnm_env *env) {
    (void)env->host->set_error(env, NNM_OK, "%s", "");
}

static nnm_status parse_inputs(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    const char *buf[GRAPH_MAX_IO];
    size_t n = 0;
    nnm_status st = h->config_strs(env, "inputs", buf, GRAPH_MAX_IO, &n);
    if (st == NNM_E_NOT_FOUND) { /* optional: the default is ["x"] */
        graph_clear_error(env);
        buf[0] = "x";
        n = 1;
    } else if (st != NNM_OK) {
        return st; /* the host named the key and the problem */
    }
    s->inputs = calloc(n ? n : 1, sizeof *s->inputs);
    if (s->inputs == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's inputs");
    for (size_t i = 0; i < n; i++) {
        span name = span_of(buf[i]);
        if (!is_input_name(name))
            return h->set_error(env, NNM_E_INVALID,
                                "config.inputs[%u]: invalid name '%.*s' (use [A-Za-z_][A-Za-z0-9_]*)",
                                (unsigned)i, qlen(name), name.p);
        if (input_find(s, name) != GRAPH_NONE)
            return h->set_error(env, NNM_E_INVALID, "config.inputs[%u]: duplicate input '%.*s'",
                                (unsigned)i, qlen(name), name.p);
        s->inputs[i] = dup_span(name);
        if (s->inputs[i] == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's inputs");
        s->n_inputs = (uint32_t)i + 1;
    }
    return NNM_OK;
}

static nnm_status syntax_error(nnm_env *env, uint32_t index, span entry) {
    return env->host->set_error(env, NNM_E_INVALID,
                                "config.nodes[%u]: expected \"name: input, input, ...\", got \"%.*s\"",
                                (unsigned)index, qlen(entry), entry.p);
}

/* Node names first (so a node may read one listed after it), then REFs. */
static nnm_status parse_nodes(nnm_env *env, graph_state *s, const char *const *entries, size_t n) {
    const nnm_host *h = env->host;
    s->nodes = calloc(n ? n : 1, sizeof *s->nodes);
    uint32_t cap = 8;
    while (cap < 2 * n)
        cap *= 2;
    s->hash = calloc(cap, sizeof *s->hash);
    s->heads = calloc(cap, sizeof *s->heads);
    s->hash_mask = cap - 1;
    if (s->nodes == NULL || s->hash == NULL || s->heads == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");

    size_t n_refs = 0;
    for (size_t i = 0; i < n; i++) {
        span e = span_of(entries[i]);
        size_t c = find_char(e, ':');
        if (c == e.n)
            return syntax_error(env, (uint32_t)i, e);
        span name = trim((span){e.p, c});
        if (!is_node_path(name))
            return syntax_error(env, (uint32_t)i, e);
        if (input_find(s, name) != GRAPH_NONE)
            return h->set_error(env, NNM_E_INVALID,
                                "config.nodes[%u]: node '%.*s' has the name of a graph input",
                                (unsigned)i, qlen(name), name.p);
        graph_node *nd = &s->nodes[i];
        nd->name = dup_span(name);
        if (nd->name == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");
        s->n_nodes = (uint32_t)i + 1;
        if (!node_insert(s, (uint32_t)i))
            return h->set_error(env, NNM_E_INVALID, "config.nodes[%u]: duplicate node '%s'",
                                (unsigned)i, nd->name);
        nd->head_len = (uint32_t)find_char(name, '.');
        nd->is_path = nd->head_len < name.n;
        if (nd->is_path) {
            if (!NNM_HOST_HAS(h, descendant_info) || !NNM_HOST_HAS(h, descendant_call))
                return h->set_error(env, NNM_E_VERSION,
                                    "config.nodes[%u]: '%s' names a descendant, which needs the "
                                    "host slots descendant_info and descendant_call (this host, "
                                    "ABI %u.%u, lacks them)",
                                    (unsigned)i, nd->name, (unsigned)h->abi_major,
                                    (unsigned)h->abi_minor);
            head_insert(s, (uint32_t)i);
        }
        span rest = trim((span){e.p + c + 1, e.n - c - 1});
        nd->first_ref = (uint32_t)n_refs;
        nd->n_refs = 0;
        if (rest.n > 0) {
            nd->n_refs = 1;
            for (size_t k = 0; k < rest.n; k++)
                nd->n_refs += rest.p[k] == ',';
        }
        if (nd->n_refs > NNM_MAX_IO)
            return h->set_error(env, NNM_E_LIMIT,
                                "config.nodes[%u]: %u inputs; a call takes at most %u",
                                (unsigned)i, (unsigned)nd->n_refs, (unsigned)NNM_MAX_IO);
        n_refs += nd->n_refs;
        if (nd->n_refs > s->max_refs)
            s->max_refs = nd->n_refs;
    }
    s->refs = calloc(n_refs ? n_refs : 1, sizeof *s->refs);
    if (s->refs == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's edges");
    s->n_refs = (uint32_t)n_refs;

    for (size_t i = 0; i < n; i++) {
        span e = span_of(entries[i]);
        size_t c = find_char(e, ':');
        span rest = trim((span){e.p + c + 1, e.n - c - 1});
        const graph_node *nd = &s->nodes[i];
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            size_t comma = find_char(rest, ',');
            span tok = trim((span){rest.p, comma});
            nnm_status st = ref_resolve(env, s, "nodes", (uint32_t)i, tok,
                                        &s->refs[nd->first_ref + j]);
            if (st != NNM_OK)
                return st;
            if (comma < rest.n) {
                rest.p += comma + 1;
                rest.n -= comma + 1;
            }
        }
    }
    return NNM_OK;
}

static nnm_status parse_outputs(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    const char *buf[GRAPH_MAX_IO];
    size_t n = 0;
    nnm_status st = h->config_strs(env, "outputs", buf, GRAPH_MAX_IO, &n);
    int dflt = st == NNM_E_NOT_FOUND;
    if (st != NNM_OK && !dflt)
        return st;
    if (dflt)
        graph_clear_error(env);
    if (dflt && s->n_nodes == 0)
        return h->set_error(env, NNM_E_INVALID, "config.nodes: empty, and no config.outputs to return");
    if (!dflt && n == 0)
        return h->set_error(env, NNM_E_INVALID,
                            "config.outputs: empty (a graph returns at least one tensor)");
    s->outputs = calloc(dflt ? 1 : n, sizeof *s->outputs);
    if (s->outputs == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's outputs");
    if (dflt) {
        uint32_t last = s->n_nodes - 1;
        s->outputs[0] = (graph_ref){last, 0, 0};
        if (s->nodes[last].n_used_out < 1)
            s->nodes[last].n_used_out = 1;
        s->n_outputs = 1;
        return NNM_OK;
    }
    for (size_t i = 0; i < n; i++) {
        st = ref_resolve(env, s, "outputs", (uint32_t)i, trim(span_of(buf[i])), &s->outputs[i]);
        if (st != NNM_OK)
            return st;
    }
    s->n_outputs = (uint32_t)n;
    return NNM_OK;
}

/* "config.nodes: cycle through 'a' -> 'b' -> 'a'" for the nodes
 * stack[from..top] and back to stack[from]. */
static nnm_status cycle_error(nnm_env *env, const graph_state *s, const uint32_t *stack,
                              uint32_t from, uint32_t top) {
    char path[512];
    size_t len = 0;
    for (uint32_t i = from; i <= top + 1 && len < sizeof path; i++) {
        const char *name = s->nodes[stack[i <= top ? i : from]].name;
        int w = snprintf(path + len, sizeof path - len, "%s'%s'", i > from ? " -> " : "", name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len >= sizeof path) /* truncated: say so */
        memcpy(path + sizeof path - 5, " ...", 5);
    return env->host->set_error(env, NNM_E_INVALID, "config.nodes: cycle through %s", path);
}

/* Depth-first over each node's inputs, roots in listed order: a post-order,
 * which is the listed order whenever that is a valid one. */
static nnm_status topo_sort(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    const uint32_t n = s->n_nodes;
    s->order = malloc((n ? n : 1) * sizeof *s->order);
    uint8_t *color = calloc(n ? n : 1, 1); /* 0 new, 1 on the stack, 2 done */
    uint32_t *stack = malloc((n ? n : 1) * sizeof *stack);
    uint32_t *next = malloc((n ? n : 1) * sizeof *next); /* next REF to visit */
    nnm_status st = NNM_OK;
    if (s->order == NULL || color == NULL || stack == NULL || next == NULL) {
        st = h->set_error(env, NNM_E_NOMEM, "out of memory ordering the graph");
        goto out;
    }
    uint32_t done = 0;
    for (uint32_t root = 0; root < n; root++) {
        if (color[root] != 0)
            continue;
        uint32_t sp = 0;
        stack[sp++] = root;
        color[root] = 1;
        next[root] = 0;
        while (sp > 0) {
            uint32_t v = stack[sp - 1];
            const graph_node *nd = &s->nodes[v];
            if (next[v] < nd->n_refs) {
                const graph_ref *r = &s->refs[nd->first_ref + next[v]++];
                if (r->src & GRAPH_REF_INPUT)
                    continue;
                uint32_t u = r->src;
                if (color[u] == 0) {
                    color[u] = 1;
                    next[u] = 0;
                    stack[sp++] = u;
                } else if (color[u] == 1) {
                    uint32_t from = sp - 1;
                    while (stack[from] != u)
                        from--;
                    st = cycle_error(env, s, stack, from, sp - 1);
                    goto out;
                }
            } else {
                sp--;
                color[v] = 2;
                s->nodes[v].step = done;
                s->order[done++] = v;
            }
        }
    }
    /* Lifetimes: a node's outputs live until the last step reading them. */
    for (uint32_t i = 0; i < n; i++)
        s->nodes[i].last_use = s->nodes[i].step;
    for (uint32_t i = 0; i < n; i++) {
        const graph_node *nd = &s->nodes[i];
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            const graph_ref *r = &s->refs[nd->first_ref + j];
            if (!(r->src & GRAPH_REF_INPUT) && s->nodes[r->src].last_use < nd->step)
                s->nodes[r->src].last_use = nd->step;
        }
    }
    for (uint32_t i = 0; i < s->n_outputs; i++)
        if (!(s->outputs[i].src & GRAPH_REF_INPUT))
            s->nodes[s->outputs[i].src].last_use = GRAPH_KEEP;
out:
    free(color);
    free(stack);
    free(next);
    return st;
}

static nnm_status graph_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, config_strs) || !NNM_HOST_HAS(h, child_info))
        return h->set_error(env, NNM_E_VERSION,
                            "graph needs a host of ABI >= %d.2 (config_strs, child_info); this "
                            "host speaks %u.%u",
                            NNM_ABI_MAJOR, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    graph_state *s = calloc(1, sizeof *s);
    const char **entries = malloc(GRAPH_MAX_NODES * sizeof *entries);
    nnm_status st;
    if (s == NULL || entries == NULL) {
        st = h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's state");
        goto fail;
    }
    size_t n = 0;
    if ((st = parse_inputs(env, s)) != NNM_OK)
        goto fail;
    if ((st = h->config_strs(env, "nodes", entries, GRAPH_MAX_NODES, &n)) != NNM_OK)
        goto fail; /* the host named the key and the problem */
    if ((st = parse_nodes(env, s, entries, n)) != NNM_OK)
        goto fail;
    if ((st = parse_outputs(env, s)) != NNM_OK)
        goto fail;
    if ((st = topo_sort(env, s)) != NNM_OK)
        goto fail;
    free(entries);
    *self = s;
    return NNM_OK;
fail:
    free(entries);
    graph_destroy(s);
    return st;
}

/* ------------------------------------------------------------------------ */
/* finalize: nodes to children                                               */
/* ------------------------------------------------------------------------ */

/* Where port >= n_out of node `node` is read first: "nodes[3]" or "outputs[0]". */
static void port_site(const graph_state *s, uint32_t node, uint32_t n_out, char *buf, size_t cap,
                      uint32_t *port) {
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            const graph_ref *r = &s->refs[nd->first_ref + j];
            if (r->src == node && r->port >= n_out) {
                snprintf(buf, cap, "nodes[%u]", (unsigned)i);
                *port = r->port;
                return;
            }
        }
    }
    for (uint32_t i = 0; i < s->n_outputs; i++)
        if (s->outputs[i].src == node && s->outputs[i].port >= n_out) {
            snprintf(buf, cap, "outputs[%u]", (unsigned)i);
            *port = s->outputs[i].port;
            return;
        }
    snprintf(buf, cap, "nodes[%u]", (unsigned)node);
    *port = n_out;
}

typedef struct graph_link {
    uint32_t child; /* GRAPH_NONE: not (yet) found; a dotted node keeps it */
    int found;
    int32_t n_inputs, n_outputs;
} graph_link;

/* Maps every plain node to its child and looks every dotted node up, checks
 * that every child is called (as a node or through a dotted node's first
 * component), and sizes the forward's scratch arrays; on failure the
 * previous mapping (if any) stays. */
static nnm_status graph_map(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    if (s->busy)
        return h->set_error(env, NNM_E_STATE,
                            "graph: children changed while the graph is running");
    const uint32_t n_children = h->child_count(env);
    graph_link *link = malloc((s->n_nodes ? s->n_nodes : 1) * sizeof *link);
    if (link == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory mapping the graph's children");
    for (uint32_t i = 0; i < s->n_nodes; i++)
        link[i] = (graph_link){GRAPH_NONE, 0, NNM_ARITY_ANY, NNM_ARITY_ANY};
    nnm_status st = NNM_OK;
    for (uint32_t c = 0; c < n_children; c++) {
        const char *name = NULL;
        int32_t n_in = NNM_ARITY_ANY, n_out = NNM_ARITY_ANY;
        if ((st = h->child_info(env, c, &name, &n_in, &n_out)) != NNM_OK)
            goto out;
        uint32_t node = name ? node_find(s, span_of(name)) : GRAPH_NONE;
        if (node == GRAPH_NONE && (name == NULL || head_find(s, span_of(name)) == GRAPH_NONE)) {
            st = h->set_error(env, NNM_E_INVALID,
                              "child '%s' is not a node of the graph (config.nodes has no entry "
                              "\"%s: ...\" nor \"%s.NAME: ...\")",
                              name ? name : "?", name ? name : "?", name ? name : "?");
            goto out;
        }
        if (node != GRAPH_NONE)
            link[node] = (graph_link){c, 1, n_in, n_out};
    }
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        if (nd->is_path) {
            int32_t n_in = NNM_ARITY_ANY, n_out = NNM_ARITY_ANY;
            st = h->descendant_info(env, nd->name, &n_in, &n_out);
            if (st == NNM_E_NOT_FOUND) {
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.nodes[%u]: no descendant module named '%s'",
                                  (unsigned)i, nd->name);
                goto out;
            }
            if (st != NNM_OK)
                goto out; /* the host said why */
            link[i] = (graph_link){GRAPH_NONE, 1, n_in, n_out};
        } else if (!link[i].found) {
            st = h->set_error(env, NNM_E_INVALID, "config.nodes[%u]: no child module named '%s'",
                              (unsigned)i, nd->name);
            goto out;
        }
    }
    uint64_t n_slots = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        const graph_link *l = &link[i];
        const char *what = nd->is_path ? "descendant" : "child";
        if (l->n_inputs >= 0 && (uint32_t)l->n_inputs != nd->n_refs) {
            st = h->set_error(env, NNM_E_INVALID,
                              "config.nodes[%u]: %s '%s' takes %d input%s, the node lists %u",
                              (unsigned)i, what, nd->name, (int)l->n_inputs,
                              l->n_inputs == 1 ? "" : "s", (unsigned)nd->n_refs);
            goto out;
        }
        if (l->n_outputs >= 0 && nd->n_used_out > (uint32_t)l->n_outputs) {
            char site[32];
            uint32_t port = 0;
            port_site(s, i, (uint32_t)l->n_outputs, site, sizeof site, &port);
            st = h->set_error(env, NNM_E_INVALID, "config.%s: '%s:%u': %s '%s' has %d output%s",
                              site, nd->name, (unsigned)port, what, nd->name, (int)l->n_outputs,
                              l->n_outputs == 1 ? "" : "s");
            goto out;
        }
        n_slots += l->n_outputs >= 0 ? (uint32_t)l->n_outputs
                                     : (nd->n_used_out ? nd->n_used_out : 1);
    }
    if (n_slots >= UINT32_MAX) {
        st = h->set_error(env, NNM_E_LIMIT, "graph: too many node outputs (%llu)",
                          (unsigned long long)n_slots);
        goto out;
    }
    nnm_tensor **vals = calloc((size_t)n_slots + 1, sizeof *vals);
    nnm_tensor **args = calloc((size_t)s->max_refs + 1, sizeof *args);
    if (vals == NULL || args == NULL) {
        free(vals);
        free(args);
        st = h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's scratch arrays");
        goto out;
    }
    uint32_t slot = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        graph_node *nd = &s->nodes[i];
        nd->child = link[i].child;
        nd->n_call_out = link[i].n_outputs >= 0 ? (uint32_t)link[i].n_outputs
                                                : (nd->n_used_out ? nd->n_used_out : 1);
        nd->slot = slot;
        slot += nd->n_call_out;
    }
    free(s->vals);
    free(s->args);
    s->vals = vals;
    s->args = args;
    s->n_slots = (uint32_t)n_slots;
    s->mapped = 1;
    s->mapped_children = n_children;
out:
    free(link);
    return st;
}

static nnm_status graph_finalize(nnm_env *env, void *self) {
    if (self == NULL)
        return env->host->set_error(env, NNM_E_STATE, "graph: finalize without state");
    return graph_map(env, self);
}

/* ------------------------------------------------------------------------ */
/* forward                                                                   */
/* ------------------------------------------------------------------------ */

static nnm_tensor *ref_value(const graph_state *s, nnm_tensor *const *in, nnm_tensor *const *vals,
                             const graph_ref *r) {
    if (r->src & GRAPH_REF_INPUT)
        return in[r->src & ~GRAPH_REF_INPUT];
    return vals[s->nodes[r->src].slot + r->port];
}

static void release_node(const nnm_host *h, const graph_node *nd, nnm_tensor **vals) {
    for (uint32_t k = 0; k < nd->n_call_out; k++) {
        h->tensor_release(vals[nd->slot + k]);
        vals[nd->slot + k] = NULL;
    }
}

static nnm_status graph_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    graph_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "graph: forward without state");
    for (uint32_t i = 0; out != NULL && i < n_out; i++)
        out[i] = NULL;
    if (n_in != s->n_inputs || (n_in && in == NULL))
        return h->set_error(env, NNM_E_SHAPE, "graph takes %u input%s (config.inputs), got %u",
                            (unsigned)s->n_inputs, s->n_inputs == 1 ? "" : "s", (unsigned)n_in);
    if (n_out != s->n_outputs || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "graph returns %u output%s (config.outputs), caller asked for %u",
                            (unsigned)s->n_outputs, s->n_outputs == 1 ? "" : "s",
                            (unsigned)n_out);
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "graph: input %u ('%s') is NULL", (unsigned)i,
                                s->inputs[i]);
    nnm_status st;
    if (!s->mapped || h->child_count(env) != s->mapped_children)
        if ((st = graph_map(env, s)) != NNM_OK)
            return st;

    /* A forward re-entered from a hook gets scratch arrays of its own. */
    nnm_tensor **vals = s->vals, **args = s->args;
    if (s->busy) {
        vals = calloc((size_t)s->n_slots + 1, sizeof *vals);
        args = calloc((size_t)s->max_refs + 1, sizeof *args);
        if (vals == NULL || args == NULL) {
            free(vals);
            free(args);
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's scratch arrays");
        }
    }
    s->busy++;
    st = NNM_OK;
    for (uint32_t p = 0; p < s->n_nodes && st == NNM_OK; p++) {
        const graph_node *nd = &s->nodes[s->order[p]];
        for (uint32_t j = 0; j < nd->n_refs; j++)
            args[j] = ref_value(s, in, vals, &s->refs[nd->first_ref + j]);
        if (nd->is_path)
            st = h->descendant_call(env, nd->name, args, nd->n_refs, vals + nd->slot,
                                    nd->n_call_out);
        else
            st = h->child_call(env, nd->child, args, nd->n_refs, vals + nd->slot,
                               nd->n_call_out);
        if (st != NNM_OK)
            break; /* the call path has set the message, with the module's path */
        /* Drop what no later node reads. */
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            const graph_ref *r = &s->refs[nd->first_ref + j];
            if (!(r->src & GRAPH_REF_INPUT) && s->nodes[r->src].last_use == p)
                release_node(h, &s->nodes[r->src], vals);
        }
        if (nd->last_use == p)
            release_node(h, nd, vals);
    }
    if (st == NNM_OK) {
        for (uint32_t i = 0; i < n_out; i++) {
            nnm_tensor *t = ref_value(s, in, vals, &s->outputs[i]);
            if (t == NULL) {
                st = h->set_error(env, NNM_E_STATE, "graph: output %u was released early",
                                  (unsigned)i);
                break;
            }
            h->tensor_retain(t);
            out[i] = t;
        }
        if (st != NNM_OK)
            for (uint32_t i = 0; i < n_out; i++) {
                h->tensor_release(out[i]);
                out[i] = NULL;
            }
    }
    for (uint32_t k = 0; k < s->n_slots; k++) {
        h->tensor_release(vals[k]);
        vals[k] = NULL;
    }
    s->busy--;
    if (vals != s->vals) {
        free(vals);
        free(args);
    }
    return st;
}

/* ------------------------------------------------------------------------ */
/* extra_repr                                                                */
/* ------------------------------------------------------------------------ */

typedef struct repr_buf {
    char *buf;
    size_t cap;
    size_t len; /* wanted */
} repr_buf;

static void put(repr_buf *b, const char *z) {
    size_t n = strlen(z);
    if (b->cap > 0 && b->len + 1 < b->cap) {
        size_t room = b->cap - 1 - b->len;
        memcpy(b->buf + b->len, z, n < room ? n : room);
    }
    b->len += n;
}

static int graph_extra_repr(void *self, char *buf, size_t cap) {
    const graph_state *s = self;
    repr_buf b = {buf, cap, 0};
    if (s != NULL) {
        put(&b, "inputs=[");
        for (uint32_t i = 0; i < s->n_inputs; i++) {
            put(&b, i ? ", " : "");
            put(&b, s->inputs[i]);
        }
        put(&b, "], outputs=[");
        for (uint32_t i = 0; i < s->n_outputs; i++) {
            const graph_ref *r = &s->outputs[i];
            put(&b, i ? ", " : "");
            if (r->src & GRAPH_REF_INPUT) {
                put(&b, s->inputs[r->src & ~GRAPH_REF_INPUT]);
                continue;
            }
            put(&b, s->nodes[r->src].name);
            if (r->has_port) {
                char k[16];
                snprintf(k, sizeof k, ":%u", (unsigned)r->port);
                put(&b, k);
            }
        }
        put(&b, "]");
    }
    if (cap > 0)
        buf[b.len < cap ? b.len : cap - 1] = '\0';
    return b.len > (size_t)INT32_MAX ? INT32_MAX : (int)b.len;
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const nnm_config_field graph_config[] = {
    {"inputs", NNM_CONFIG_STRS, 0, "input names, in call order (default [\"x\"])"},
    {"nodes", NNM_CONFIG_STRS, NNM_CONFIG_REQUIRED,
     "one \"child: input, input, ...\" per node (or a dotted descendant: \"heads.0: ...\"); an "
     "input is NAME or NAME:K"},
    {"outputs", NNM_CONFIG_STRS, 0, "NAME or NAME:K returned, in order (default: the last node)"},
};

static const nnm_layer_vtable graph_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "graph",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = NNM_ARITY_ANY,
    .create = graph_create,
    .destroy = graph_destroy,
    .forward = graph_forward,
    .extra_repr = graph_extra_repr,
    .backward = NULL,
    .finalize = graph_finalize,
    .config_fields = graph_config,
    .n_config_fields = sizeof graph_config / sizeof graph_config[0],
};

static const nnm_layer_vtable *const graph_layers[] = {&graph_layer};

static const nnm_plugin_desc graph_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "graph",
    .description = "Graph container: a DAG of named children with named edges (residuals, "
                   "multi-input/multi-output layers)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = graph_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(graph_plugin)
