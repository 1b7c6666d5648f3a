/* plugins/graph/graph.c - the "graph" container: a directed acyclic graph of
 * calls to child modules with named edges, for residual connections, layers
 * with several inputs or outputs (a ResNet basic block, an encoder block, a
 * two-headed model), weight sharing and tensors the graph owns (a class
 * token): any forward a PyTorch user writes, with the functional ops as
 * stateless layer children.
 *
 * ---------------------------------------------------------------------------
 * SPEC (docs/manifest.md copies this section)
 * ---------------------------------------------------------------------------
 * Config:
 *   inputs   list of strings, default ["x"]. The graph's input names, in the
 *            order forward receives them. Each matches [A-Za-z_][A-Za-z0-9_]*
 *            and is unique; at most NNM_MAX_IO (16).
 *   parameters  list of strings, default []. Tensors the graph module owns
 *            (PyTorch's get_attr: self.class_token), one per entry:
 *                "NAME: [D0, D1, ...] INIT"
 *            D are sizes (>= 0; "[]" is a scalar; at most 8); INIT is zeros
 *            (the default when left out), ones, normal(MEAN, STD) or
 *            uniform(A, B) (from the context's seeded generator). They are
 *            f32 parameters of the graph module itself: state-dict name
 *            "<graph path>.NAME", trained, saved, loaded strictly and moved
 *            like any other.
 *   buffers  list of strings, default []: the same with an optional dtype
 *            first after the shape, f32 (default) or i64:
 *                "relative_position_index: [49, 49] i64"
 *            (i64 takes zeros or ones and needs the host slot buffer_new_v2,
 *            ABI 1.5). Persistent buffers of the graph module.
 *   constants  list of strings, default [] (1.2): tensors of fixed values
 *            the graph reads, as PyTorch's non-persistent buffers
 *            (register_buffer(..., persistent=False)) or tensors a forward
 *            makes from no input, one per entry:
 *                "NAME: [D0, D1, ...] DTYPE base64:DATA"
 *            DTYPE f32 (default when left out) or i64; DATA the standard
 *            base64 (RFC 4648, '=' padded, no whitespace) of the numel
 *            values, little-endian, row-major (so an f32 holds inf and NaN
 *            exactly). Non-persistent buffers of the graph module: not in
 *            its state dict (a PyTorch state dict loads strictly), moved
 *            with it, read by REF like a buffer; their values travel in the
 *            config, so in the manifest itself. Needs the host slots
 *            buffer_new_v2, tensor_from_host and op_update (ABI 1.5).
 *   reads    list of strings, default [] (1.2): parameters and buffers of
 *            DESCENDANTS the graph reads directly, by their state-dict name
 *            below the graph, a dotted path of at least two components
 *            (PyTorch's self.emb.weight in `h @ self.emb.weight.T`: weight
 *            tying; a child norm's weight), quoted as node paths are:
 *                "emb.weight", "`block 1`.conv.weight"
 *            A REF names it by the same text. The owner keeps it (state dict,
 *            training, moves); the graph looks it up when mapped (a name that
 *            is no descendant's tensor fails) and again at each forward, so a
 *            tie made later is followed; the gradient reaches the owner.
 *            Needs the host slot descendant_tensor (ABI 1.5).
 *   nodes    list of strings, required. One entry per node, in either form:
 *                "PATH: REF, REF, ..."        (v1; "PATH:" takes no inputs)
 *                "NODE = PATH(REF, REF, ...)" (v2; "NODE = PATH()" none)
 *            A v1 node is named PATH and calls module PATH; a v2 node is
 *            named NODE and calls module PATH, so several nodes may call the
 *            same module (weight sharing, one ReLU used twice). PATH names
 *            one of the graph module's CHILDREN (children are attached
 *            separately: by the manifest builder, or with
 *            nnm_module_add_child), or a dotted path to a DESCENDANT below a
 *            child, as a PyTorch forward calls into its containers: "heads.0"
 *            (self.heads[0], a module_list's child), "tasks.cls"
 *            (self.tasks["cls"], a module_dict's), "enc.0.fc" (any depth).
 *            A path component (and a NODE's, which may be dotted too) is
 *            bare when it matches [A-Za-z0-9_-]+, and otherwise written
 *            between backticks, a backtick inside doubled: `my block`.0,
 *            `a``b` (the name a`b). A quoted component is any non-empty
 *            text without '.' and without control characters (C0, DEL, C1),
 *            the names modules may have. Node names are unique and are not
 *            the name of a graph input, parameter or buffer. The REFs are
 *            the node's inputs, in order, each one of
 *                NAME      output 0 of node NAME, or the graph input,
 *                          parameter or buffer NAME
 *                NAME:K    output K (decimal, K < 16) of node NAME (a graph
 *                          input, parameter or buffer has only output 0:
 *                          x:0 is x); NAME may be dotted: tasks.cls:1 is
 *                          output 1 of node tasks.cls
 *            Whitespace around tokens is ignored. A node may be listed before
 *            the nodes it reads. At most 16384 nodes. A node nothing reads
 *            still runs (its outputs are dropped at once).
 *   outputs  list of REFs, default: output 0 of the LAST node listed. The
 *            graph returns these tensors, in order (at most NNM_MAX_IO). A graph
 *            input, parameter or buffer may be returned (as a new reference
 *            to the same tensor).
 *   output_names  list of strings, default none: one name per output (the
 *            model returns a dict, as torchvision's segmentation models
 *            return {"out": ...}). Non-empty, unique, no control characters.
 *            Published through the host slot set_output_names (ABI 1.5);
 *            nnm_module_output_names reads them.
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
 *   config.nodes[1]: expected "node = module(input, ...)", got "a = fc1 x"
 *                    (an entry with '=' outside backticks is a v2 node)
 *   config.nodes[1]: bad input 'x:' (expected NAME or NAME:K, K < 16)
 *   config.nodes[2]: duplicate node 'relu'
 *   config.nodes[0]: node 'x' has the name of a graph input
 *   config.nodes[0]: node 'w' has the name of a graph parameter (or buffer)
 *   config.nodes[3]: unknown input 'fc9'
 *   config.nodes[1]: 'x:1' refers to output 1 of graph input 'x', which is one tensor
 *                    (also "of parameter 'w'", "of buffer 'b'")
 *   config.nodes: cycle through 'a' -> 'b' -> 'a'
 *   config.outputs[0]: unknown node 'z'
 *   config.outputs[0]: bad reference 'a:' (expected NAME or NAME:K, K < 16)
 *   config.outputs: empty (a graph returns at least one tensor)
 *   config.nodes: empty, and no config.outputs to return
 *   config.parameters[0]: expected "name: [d0, d1, ...] init", got "w [2]"
 *   config.buffers[0]: expected "name: [d0, d1, ...] dtype init", got "b: 2"
 *   config.parameters[0]: bad size '-1' (expected an integer >= 0)
 *   config.parameters[0]: 9 dims; at most 8
 *   config.parameters[0]: unknown init 'gauss' (zeros, ones, normal(MEAN, STD), uniform(A, B))
 *   config.parameters[0]: uniform(A, B) needs A <= B, got uniform(1, 0)
 *   config.parameters[0]: normal(MEAN, STD) needs STD >= 0, got normal(0, -1)
 *   config.buffers[0]: unknown dtype or init 'f16' (dtypes f32, i64; inits zeros, ...)
 *   config.buffers[0]: an i64 buffer is initialised with zeros or ones
 *   config.constants[0]: expected "name: [d0, d1, ...] dtype base64:DATA", got "c: [2]"
 *   config.constants[0]: bad base64 character at byte 3 of the data
 *   config.constants[0]: the data is not base64 of 8 bytes (2 f32 values, little-endian)
 *   config.reads[0]: expected "module.path.tensor" (a descendant's parameter or
 *     buffer), got "w"
 *   config.reads[0]: duplicate name 'a.w' (as reads[...]), or an input's name
 *   config.parameters[1]: duplicate name 'w' (as parameters[0])
 *                    (also "as buffers[0]", "as constants[0]")
 *   config.parameters[0]: 'x' is the name of a graph input
 *   config.output_names: 2 names for 1 output (one per entry of config.outputs)
 *   config.output_names[1]: duplicate name 'out'
 *   config.output_names[0]: invalid name '' (non-empty, no control characters)
 * and with NNM_E_VERSION where the host lacks a slot a feature needs:
 *   config.buffers[0]: an i64 buffer needs the host slot buffer_new_v2 (this
 *     host, ABI 1.4, lacks it)   (also "a randomly initialised buffer")
 *   config.output_names needs the host slot set_output_names (this host, ABI
 *     1.4, lacks it)
 *   config.constants needs the host slots buffer_new_v2, tensor_from_host and
 *     op_update (this host, ABI 1.4, lacks them)
 *   config.reads needs the host slot descendant_tensor (this host, ABI 1.4,
 *     lacks it)
 * (an f32 buffer of zeros or ones uses the 1.0 slot buffer_new, so such a
 * graph runs on any host of ABI >= 1.2). The names of parameters and buffers
 * are checked here (a name the runtime would refuse is bad syntax: control
 * characters, '.', text that is not UTF-8), so what the host may still refuse
 * (out of memory, limits) comes with the host's message.
 *
 * A dotted PATH needs the host slots descendant_info and descendant_call
 * (ABI 1.2); create refuses one on a host without them with NNM_E_VERSION:
 *   config.nodes[2]: 'heads.0' names a descendant, which needs the host slots
 *   descendant_info and descendant_call (this host, ABI 1.2, lacks them)
 *
 * finalize (nnm_module_finalize, the manifest builder), or the first forward
 * when finalize was never called or children were added since, maps each
 * node with a plain PATH to the child of that name (host->child_info), looks
 * each dotted PATH up (host->descendant_info), and fails with NNM_E_INVALID on:
 *   config.nodes[3]: no child module named 'conv9'
 *   config.nodes[3]: no descendant module named 'heads.5'
 *   config.reads[0]: no parameter or buffer 'emb.wieght' below the graph
 *   child 'foo' is not a node of the graph (config.nodes has no entry "foo: ..."
 *     nor "foo.NAME: ...")  (nor a v2 node calling it)
 *   config.nodes[2]: child 'fc1' takes 1 input, the node lists 2
 *   config.nodes[2]: descendant 'heads.0' takes 1 input, the node lists 2
 *   config.nodes[4]: 'fork:2': child 'fork' has 2 outputs  (or config.outputs[i];
 *     "descendant" for a dotted node)
 * Every child must be called by a node, or be the first component of a
 * dotted PATH (a module_list or module_dict holding the descendants the
 * graph calls) or of an entry of config.reads, or both. A module of fixed
 * arity is called with its n_outputs outputs; one with NNM_ARITY_ANY outputs with (the highest K
 * referenced) + 1 of them (per node: two nodes calling it may differ).
 *
 * forward runs the nodes in order: a plain PATH through host->child_call
 * (by index), a dotted one through host->descendant_call (by path, resolved
 * at each call, without allocating); either way through the central call
 * path, so the called module's hooks, mode and profiling apply (once per
 * node calling it). It keeps each node's outputs until the last node
 * reading them has run, then releases them. Graph inputs, parameters and
 * buffers are borrowed. On any failure every intermediate is released and
 * out[] is left NULL; the message is the failing module's, with its module
 * path.
 *
 * State: the parsed config, the child mapping and the borrowed handles of
 * the graph's own parameters and buffers (self; the module owns the
 * tensors); the children belong to the module tree. Scratch arrays for one
 * forward are allocated by the mapping, so a steady-state forward allocates
 * nothing here.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAPH_MAX_NODES 16384u
#define GRAPH_MAX_TENSORS 4096u /* entries of config.parameters, of config.buffers, and of
                                 * config.constants */
#define GRAPH_MAX_IO NNM_MAX_IO /* entries of config.inputs and config.outputs: one call's */
#define GRAPH_MAX_PORT (NNM_MAX_IO - 1u) /* largest K in NAME:K: a call has at most NNM_MAX_IO outputs */
#define GRAPH_REF_INPUT 0x80000000u  /* | index into inputs */
#define GRAPH_REF_TENSOR 0x40000000u /* | index into tensors */
#define GRAPH_REF_KIND (GRAPH_REF_INPUT | GRAPH_REF_TENSOR) /* neither: a node's index */
#define GRAPH_NONE 0xffffffffu
#define GRAPH_KEEP 0xffffffffu /* last_use of a node the graph returns */
#define GRAPH_QUOTE 80         /* most bytes of an entry or name quoted in a message */
#define GRAPH_SHOW (GRAPH_QUOTE + 4)
/* nnmod.h's NNM_DEVICE_META (a plugin sees only plugin.h): a tree built there
 * has no storage, so constants are checked but not written */
#define GRAPH_DEVICE_META 0x6d6574

/* One input of a node, or one output of the graph. */
typedef struct graph_ref {
    uint32_t src;  /* node index (listed order), or GRAPH_REF_INPUT | input index, or
                    * GRAPH_REF_TENSOR | tensor index */
    uint32_t port; /* output of the node; 0 for a graph input or tensor */
    int has_port;  /* written as NAME:K */
} graph_ref;

typedef struct graph_node {
    char *name;                 /* the node's name, decoded (components joined by '.') */
    char *path;                 /* the module it calls, decoded; == name for a v1 node */
    uint32_t head_len;          /* length of the path's first component (all of a plain one) */
    int is_path;                /* dotted path: called with descendant_call */
    uint32_t first_ref, n_refs; /* into graph_state.refs */
    uint32_t n_used_out;        /* highest port read + 1; 0 when nothing reads it */
    uint32_t step;              /* position in the execution order */
    uint32_t last_use;          /* last step reading it (its own when unread), or GRAPH_KEEP */
    /* set by graph_map */
    uint32_t child;             /* child index; GRAPH_NONE for a dotted path */
    uint32_t n_call_out;        /* outputs requested from the module */
    uint32_t slot;              /* first entry of its outputs in vals */
} graph_node;

/* A parameter, buffer or constant of the graph module itself. */
enum { GRAPH_PARAM = 0, GRAPH_BUFFER = 1, GRAPH_CONST = 2, GRAPH_READ = 3 };
static const char *const graph_tensor_keys[] = {"parameters", "buffers", "constants", "reads"};

typedef struct graph_tensor {
    char *name;
    nnm_tensor *t; /* borrowed: the module owns it (the handle survives moves); a
                    * GRAPH_READ's owner is a descendant: looked up at each forward */
    int kind;       /* GRAPH_PARAM, GRAPH_BUFFER, GRAPH_CONST or GRAPH_READ */
    uint32_t entry; /* index in config.parameters, .buffers, .constants or .reads */
} graph_tensor;

typedef struct graph_state {
    uint32_t n_inputs;
    char **inputs;
    uint32_t n_tensors;
    graph_tensor *tensors;
    uint32_t n_nodes;
    graph_node *nodes;   /* listed order */
    uint32_t *order;     /* execution order: node indices */
    uint32_t n_refs;
    graph_ref *refs;
    uint32_t max_refs;   /* most inputs of one node */
    uint32_t n_outputs;
    graph_ref *outputs;
    uint32_t hash_mask;
    uint32_t *hash;      /* every name a REF may use: a graph_ref src + 1; 0 is empty */
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
/* A character of a bare (unquoted) name component: [A-Za-z0-9_-]. */
static int is_bare(char c) {
    return is_alpha_(c) || is_digit(c) || c == '-';
}

/* Length of the control character at p (n > 0 bytes left): 1 for C0 or DEL,
 * 2 for C1 (U+0080..U+009F in UTF-8), else 0. */
static size_t control_len(const char *p, size_t n) {
    const unsigned char c = (unsigned char)p[0];
    if (c < 0x20 || c == 0x7f)
        return 1;
    if (c == 0xc2 && n > 1 && (unsigned char)p[1] >= 0x80 && (unsigned char)p[1] <= 0x9f)
        return 2;
    return 0;
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

static span sub(span s, size_t from, size_t to) {
    return (span){s.p + from, to - from};
}

/* Index of the first `c` in s outside backticks, or s.n. A doubled backtick
 * inside a quoted name toggles twice, so it needs no special case. */
static size_t find_top(span s, char c) {
    int quoted = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (s.p[i] == '`')
            quoted = !quoted;
        else if (!quoted && s.p[i] == c)
            return i;
    }
    return s.n;
}

static uint32_t count_top(span s, char c) {
    uint32_t k = 0;
    for (;;) {
        size_t i = find_top(s, c);
        if (i == s.n)
            return k;
        k++;
        s = sub(s, i + 1, s.n);
    }
}

/* Reads a name from the front of *s: components joined by single dots, each
 * bare ([A-Za-z0-9_-]+) or between backticks (a doubled backtick is one;
 * no '.' and no control character inside). Writes it decoded (components
 * joined by '.') to out, which has room for s->n + 1 bytes, and advances *s
 * past it. 0 on bad syntax. */
static int read_name(span *s, char *out, size_t *out_len, uint32_t *n_comp, uint32_t *head_len) {
    size_t i = 0, o = 0;
    uint32_t nc = 0;
    for (;;) {
        const size_t start = o;
        if (i < s->n && s->p[i] == '`') {
            for (i++;; i++) {
                if (i >= s->n)
                    return 0; /* unterminated */
                if (s->p[i] == '`') {
                    if (i + 1 < s->n && s->p[i + 1] == '`') {
                        out[o++] = '`';
                        i++;
                        continue;
                    }
                    i++;
                    break;
                }
                if (s->p[i] == '.' || control_len(s->p + i, s->n - i))
                    return 0;
                out[o++] = s->p[i];
            }
        } else {
            while (i < s->n && is_bare(s->p[i]))
                out[o++] = s->p[i++];
        }
        if (o == start)
            return 0; /* an empty component */
        if (nc++ == 0)
            *head_len = (uint32_t)o;
        if (i < s->n && s->p[i] == '.') {
            out[o++] = '.';
            i++;
            continue;
        }
        break;
    }
    out[o] = '\0';
    *out_len = o;
    *n_comp = nc;
    s->p += i;
    s->n -= i;
    return 1;
}

/* Reads exactly one name from all of s (trimmed); 0 on bad syntax. */
static int whole_name(span s, char *out, size_t *out_len, uint32_t *n_comp, uint32_t *head_len) {
    s = trim(s);
    return read_name(&s, out, out_len, n_comp, head_len) && s.n == 0;
}

/* Valid UTF-8? (the runtime refuses names that are not) */
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else
            return 0;
        if (p[1] < lo || p[1] > hi)
            return 0;
        for (size_t k = 2; k <= n; k++)
            if ((p[k] & 0xc0) != 0x80)
                return 0;
        p += n + 1;
    }
    return 1;
}

/* A graph input name: [A-Za-z_][A-Za-z0-9_]*. */
static int is_input_name(span s) {
    if (s.n == 0 || is_digit(s.p[0]))
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (!is_alpha_(s.p[i]) && !is_digit(s.p[i]))
            return 0;
    return 1;
}

static int span_is(span s, const char *z) {
    return strlen(z) == s.n && memcmp(s.p, z, s.n) == 0;
}

/* s for quoting in a message: at most GRAPH_QUOTE bytes of it (cut where a
 * UTF-8 sequence starts, then "..."), each control character as '?'. buf
 * has GRAPH_SHOW bytes. */
static const char *shown(span s, char *buf) {
    size_t n = s.n, o = 0;
    int cut = 0;
    if (n > GRAPH_QUOTE) {
        n = GRAPH_QUOTE;
        while (n > 0 && ((unsigned char)s.p[n] & 0xc0) == 0x80)
            n--;
        cut = 1;
    }
    for (size_t i = 0; i < n;) {
        size_t k = control_len(s.p + i, n - i);
        buf[o++] = k ? '?' : s.p[i];
        i += k ? k : 1;
    }
    if (cut) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static const char *shown_z(const char *z, char *buf) {
    return shown(span_of(z ? z : "?"), buf);
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
    for (uint32_t i = 0; s->tensors != NULL && i < s->n_tensors; i++)
        free(s->tensors[i].name);
    for (uint32_t i = 0; s->nodes != NULL && i < s->n_nodes; i++) {
        if (s->nodes[i].path != s->nodes[i].name)
            free(s->nodes[i].path);
        free(s->nodes[i].name);
    }
    free(s->inputs);
    free(s->tensors);
    free(s->nodes);
    free(s->order);
    free(s->refs);
    free(s->outputs);
    free(s->hash);
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

/* The name of symbol `src` (a graph_ref src). */
static const char *sym_name(const graph_state *s, uint32_t src) {
    if (src & GRAPH_REF_INPUT)
        return s->inputs[src & ~GRAPH_REF_KIND];
    if (src & GRAPH_REF_TENSOR)
        return s->tensors[src & ~GRAPH_REF_KIND].name;
    return s->nodes[src].name;
}

/* The symbol (graph input, tensor or node) named `name`, or GRAPH_NONE. */
static uint32_t sym_find(const graph_state *s, span name) {
    if (s->hash == NULL)
        return GRAPH_NONE;
    for (uint32_t i = hash_span(name) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->hash[i];
        if (v == 0)
            return GRAPH_NONE;
        if (span_is(name, sym_name(s, v - 1)))
            return v - 1;
    }
}

/* Adds symbol `src` (its name already set); returns GRAPH_NONE, or the
 * symbol that already has the name. */
static uint32_t sym_insert(graph_state *s, uint32_t src) {
    span name = span_of(sym_name(s, src));
    for (uint32_t i = hash_span(name) & s->hash_mask;; i = (i + 1) & s->hash_mask) {
        uint32_t v = s->hash[i];
        if (v == 0) {
            s->hash[i] = src + 1;
            return GRAPH_NONE;
        }
        if (span_is(name, sym_name(s, v - 1)))
            return v - 1;
    }
}

static const char *tensor_kind(const graph_tensor *t) {
    return t->kind == GRAPH_READ    ? "descendant's tensor"
           : t->kind == GRAPH_CONST  ? "constant"
           : t->kind == GRAPH_BUFFER ? "buffer"
                                     : "parameter";
}

/* ------------------------------------------------------------------------ */
/* create: parsing and validation                                            */
/* ------------------------------------------------------------------------ */

/* Splits a trimmed REF into its decoded name (written to buf, room for
 * tok.n + 1 bytes) and optional ":K". 0 on bad syntax. */
static int ref_parse(span tok, char *buf, span *name, int *has_port, uint32_t *port) {
    size_t len;
    uint32_t nc, hl;
    *has_port = 0;
    *port = 0;
    span cur = tok;
    if (!read_name(&cur, buf, &len, &nc, &hl))
        return 0;
    *name = (span){buf, len};
    cur = trim(cur);
    if (cur.n == 0)
        return 1;
    if (cur.p[0] != ':')
        return 0;
    *has_port = 1;
    span k = trim(sub(cur, 1, cur.n));
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

/* Resolves a REF token of entry `where`[index] ("nodes" or "outputs"); buf
 * has room for tok.n + 1 bytes. */
static nnm_status ref_resolve(nnm_env *env, graph_state *s, const char *where, uint32_t index,
                              span tok, char *buf, graph_ref *out) {
    const nnm_host *h = env->host;
    const int in_nodes = strcmp(where, "nodes") == 0;
    char q[GRAPH_SHOW], q2[GRAPH_SHOW];
    span name;
    int has_port;
    uint32_t port;
    if (!ref_parse(tok, buf, &name, &has_port, &port))
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: bad %s '%s' (expected NAME or NAME:K, K <= %u)", where,
                            (unsigned)index, in_nodes ? "input" : "reference", shown(tok, q),
                            GRAPH_MAX_PORT);
    uint32_t src = sym_find(s, name);
    if (src == GRAPH_NONE)
        return h->set_error(env, NNM_E_INVALID, "config.%s[%u]: unknown %s '%s'", where,
                            (unsigned)index, in_nodes ? "input" : "node", shown(name, q));
    if (src & GRAPH_REF_KIND) {
        if (port != 0)
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: '%s' refers to output %u of %s '%s', which is one "
                                "tensor",
                                where, (unsigned)index, shown(tok, q), (unsigned)port,
                                (src & GRAPH_REF_INPUT)
                                    ? "graph input"
                                    : tensor_kind(&s->tensors[src & ~GRAPH_REF_KIND]),
                                shown_z(sym_name(s, src), q2));
        *out = (graph_ref){src, 0, has_port};
        return NNM_OK;
    }
    *out = (graph_ref){src, port, has_port};
    if (s->nodes[src].n_used_out < port + 1)
        s->nodes[src].n_used_out = port + 1;
    return NNM_OK;
}

/* The list getters have no default: a missing optional key reads as
 * NNM_E_NOT_FOUND with a message, which must not outlive a create that
 * succeeds. */
static void graph_clear_error(nnm_env *env) {
    (void)env->host->set_error(env, NNM_OK, "%s", "");
}

/* An optional list of strings: *n = 0 when the key is absent. */
static nnm_status optional_strs(nnm_env *env, const char *key, const char **buf, size_t cap,
                                size_t *n) {
    *n = 0;
    nnm_status st = env->host->config_strs(env, key, buf, cap, n);
    if (st == NNM_E_NOT_FOUND) {
        graph_clear_error(env);
        *n = 0;
        return NNM_OK;
    }
    return st; /* the host named the key and the problem */
}

static nnm_status parse_inputs(nnm_env *env, graph_state *s, const char *const *buf, size_t n) {
    const nnm_host *h = env->host;
    char q[GRAPH_SHOW];
    s->inputs = calloc(n ? n : 1, sizeof *s->inputs);
    if (s->inputs == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's inputs");
    for (size_t i = 0; i < n; i++) {
        span name = span_of(buf[i]);
        if (!is_input_name(name))
            return h->set_error(env, NNM_E_INVALID,
                                "config.inputs[%u]: invalid name '%s' (use [A-Za-z_][A-Za-z0-9_]*)",
                                (unsigned)i, shown(name, q));
        s->inputs[i] = dup_span(name);
        if (s->inputs[i] == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's inputs");
        s->n_inputs = (uint32_t)i + 1;
        if (sym_insert(s, GRAPH_REF_INPUT | (uint32_t)i) != GRAPH_NONE) {
            s->n_inputs--; /* the hash does not hold it */
            free(s->inputs[i]);
            s->inputs[i] = NULL;
            return h->set_error(env, NNM_E_INVALID, "config.inputs[%u]: duplicate input '%s'",
                                (unsigned)i, shown(name, q));
        }
    }
    return NNM_OK;
}

/* ---- config.parameters, config.buffers and config.constants ----------- */

static nnm_status tensor_syntax(nnm_env *env, const char *key, size_t i, span e) {
    char q[GRAPH_SHOW];
    return env->host->set_error(env, NNM_E_INVALID, "config.%s[%u]: expected \"%s\", got \"%s\"",
                                key, (unsigned)i,
                                strcmp(key, "buffers") == 0     ? "name: [d0, d1, ...] dtype init"
                                : strcmp(key, "constants") == 0 ? "name: [d0, d1, ...] dtype base64:DATA"
                                                                : "name: [d0, d1, ...] init",
                                shown(e, q));
}

/* The value of base64 digit c, or -1. */
static int b64_digit(char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decodes standard base64 (RFC 4648, '=' padding required to a multiple of
 * 4, no whitespace) into out, which has room for `cap` bytes; *n gets the
 * decoded length. 0 on a bad digit, bad padding or a length other than cap. */
/* Whether base64 text `in` decodes to exactly `cap` bytes, judged from its
 * length and padding alone: checked before a buffer of the size a shape
 * claims is allocated, so a huge shape with little text costs nothing. */
static int b64_size_is(span in, size_t cap, size_t *pad) {
    *pad = 0;
    if (in.n % 4 != 0)
        return 0;
    if (in.n >= 4 && in.p[in.n - 1] == '=')
        *pad = in.p[in.n - 2] == '=' ? 2 : 1;
    return in.n / 4 * 3 - *pad == cap;
}

static int b64_decode(span in, unsigned char *out, size_t cap, size_t *n) {
    *n = 0;
    size_t pad;
    if (!b64_size_is(in, cap, &pad))
        return 0;
    for (size_t i = 0; i < in.n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            const int last_group = i + 4 == in.n;
            if (last_group && k >= 4 - (int)pad) {
                if (in.p[i + (size_t)k] != '=')
                    return 0;
                v[k] = 0;
            } else if ((v[k] = b64_digit(in.p[i + (size_t)k])) < 0) {
                return 0;
            }
        }
        const uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                           (uint32_t)v[3];
        const unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8),
                                    (unsigned char)w};
        for (int k = 0; k < 3 && *n < cap; k++)
            out[(*n)++] = b[k];
    }
    return *n == cap;
}

/* The word ([A-Za-z0-9_]*) at the front of s. */
static span word_at(span s) {
    size_t i = 0;
    while (i < s.n && (is_alpha_(s.p[i]) || is_digit(s.p[i])))
        i++;
    return sub(s, 0, i);
}

/* A finite number, all of s (trimmed). */
static int number(span s, double *out) {
    s = trim(s);
    char buf[64];
    if (s.n == 0 || s.n >= sizeof buf)
        return 0;
    memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + s.n || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

typedef struct tensor_decl {
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS];
    int i64;     /* buffers and constants: dtype i64 */
    int32_t init;
    double a, b;
    span data;   /* constants: the base64 text after "base64:" */
} tensor_decl;

/* Parses "NAME: [D0, ...] [dtype] [init]" (the dtype only for buffers), or
 * for constants "NAME: [D0, ...] [dtype] base64:DATA"; the decoded name
 * goes to buf (room for e.n + 1 bytes). */
static nnm_status tensor_parse(nnm_env *env, const char *key, size_t i, span e, char *buf,
                               tensor_decl *d) {
    const nnm_host *h = env->host;
    const int constant = strcmp(key, "constants") == 0;
    const int buffer = constant || strcmp(key, "buffers") == 0;
    char q[GRAPH_SHOW];
    memset(d, 0, sizeof *d);
    d->init = NNM_INIT_ZEROS;
    span all = trim(e);
    size_t c = find_top(all, ':');
    size_t len;
    uint32_t nc, hl;
    if (c == all.n || !whole_name(sub(all, 0, c), buf, &len, &nc, &hl) || nc != 1 ||
        !utf8_ok(buf))
        return tensor_syntax(env, key, i, all);
    span rest = trim(sub(all, c + 1, all.n));
    size_t close = rest.n ? find_top(rest, ']') : 0;
    if (rest.n == 0 || rest.p[0] != '[' || close == rest.n)
        return tensor_syntax(env, key, i, all);
    span dims = trim(sub(rest, 1, close));
    while (dims.n > 0) {
        size_t comma = find_top(dims, ',');
        span tok = trim(sub(dims, 0, comma));
        int64_t v = 0;
        int ok = tok.n > 0 && tok.n <= 18;
        for (size_t k = 0; ok && k < tok.n; k++) {
            ok = is_digit(tok.p[k]);
            v = v * 10 + (tok.p[k] - '0');
        }
        if (!ok)
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: bad size '%s' (expected an integer >= 0)", key,
                                (unsigned)i, shown(tok, q));
        if (d->ndim == NNM_MAX_DIMS)
            return h->set_error(env, NNM_E_INVALID, "config.%s[%u]: %u dims; at most %d", key,
                                (unsigned)i, (unsigned)(count_top(dims, ',') + 1 + d->ndim),
                                NNM_MAX_DIMS);
        d->shape[d->ndim++] = v;
        if (comma == dims.n)
            break;
        dims = sub(dims, comma + 1, dims.n);
        if (trim(dims).n == 0) /* "[2,]" */
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: bad size '' (expected an integer >= 0)", key,
                                (unsigned)i);
    }
    rest = trim(sub(rest, close + 1, rest.n));
    span w = word_at(rest);
    if (buffer && (span_is(w, "f32") || span_is(w, "i64"))) {
        d->i64 = span_is(w, "i64");
        rest = trim(sub(rest, w.n, rest.n));
        w = word_at(rest);
    }
    if (constant) {
        /* the values, always: a constant has no init */
        if (!span_is(w, "base64") || rest.n <= w.n || rest.p[w.n] != ':')
            return tensor_syntax(env, key, i, all);
        d->data = sub(rest, w.n + 1, rest.n);
        for (size_t k = 0; k < d->data.n; k++)
            if (b64_digit(d->data.p[k]) < 0 && d->data.p[k] != '=')
                return h->set_error(env, NNM_E_INVALID,
                                    "config.%s[%u]: bad base64 character at byte %u of the data",
                                    key, (unsigned)i, (unsigned)k);
        return NNM_OK;
    }
    if (rest.n == 0)
        return NNM_OK; /* zeros */
    if (w.n == 0)
        return tensor_syntax(env, key, i, all);
    span after = trim(sub(rest, w.n, rest.n));
    if (span_is(w, "zeros") || span_is(w, "ones")) {
        if (after.n != 0)
            return tensor_syntax(env, key, i, all);
        d->init = span_is(w, "ones") ? NNM_INIT_ONES : NNM_INIT_ZEROS;
    } else if (span_is(w, "normal") || span_is(w, "uniform")) {
        const int normal = span_is(w, "normal");
        size_t comma = find_top(after, ',');
        if (after.n < 2 || after.p[0] != '(' || after.p[after.n - 1] != ')' || comma == after.n ||
            !number(sub(after, 1, comma), &d->a) || !number(sub(after, comma + 1, after.n - 1), &d->b))
            return tensor_syntax(env, key, i, all);
        d->init = normal ? NNM_INIT_NORMAL : NNM_INIT_UNIFORM;
        if (normal && !(d->b >= 0))
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: normal(MEAN, STD) needs STD >= 0, got normal(%g, %g)",
                                key, (unsigned)i, d->a, d->b);
        if (!normal && !(d->a <= d->b))
            return h->set_error(env, NNM_E_INVALID,
                                "config.%s[%u]: uniform(A, B) needs A <= B, got uniform(%g, %g)",
                                key, (unsigned)i, d->a, d->b);
    } else if (buffer) {
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: unknown dtype or init '%s' (dtypes f32, i64; inits "
                            "zeros, ones, normal(MEAN, STD), uniform(A, B))",
                            key, (unsigned)i, shown(w, q));
    } else {
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: unknown init '%s' (zeros, ones, normal(MEAN, STD), "
                            "uniform(A, B))",
                            key, (unsigned)i, shown(w, q));
    }
    if (d->i64 && d->init != NNM_INIT_ZEROS && d->init != NNM_INIT_ONES)
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: an i64 buffer is initialised with zeros or ones", key,
                            (unsigned)i);
    return NNM_OK;
}

/* The byte count of constant entry i's values (numel of f32 or i64), checked
 * against its text before anything of that size is allocated: the text's
 * length and padding alone give the bytes it decodes to, so a huge shape
 * with little text is refused here, not by an allocation (found by fuzz). */
static nnm_status constant_bytes(nnm_env *env, const char *key, size_t i, const tensor_decl *d,
                                 size_t *bytes, size_t *numel_out) {
    const nnm_host *h = env->host;
    uint64_t numel = 1;
    for (int32_t k = 0; k < d->ndim; k++) {
        if (d->shape[k] != 0 && numel > (UINT64_MAX / 8u) / (uint64_t)d->shape[k])
            return h->set_error(env, NNM_E_LIMIT, "config.%s[%u]: too many elements", key,
                                (unsigned)i);
        numel *= (uint64_t)d->shape[k];
    }
    if (numel > (uint64_t)(SIZE_MAX / 8u))
        return h->set_error(env, NNM_E_LIMIT, "config.%s[%u]: too many elements", key,
                            (unsigned)i);
    *numel_out = (size_t)numel;
    *bytes = (size_t)numel * (d->i64 ? 8u : 4u);
    size_t pad;
    if (!b64_size_is(d->data, *bytes, &pad))
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: the data is not base64 of %zu bytes (%llu %s values, "
                            "little-endian)",
                            key, (unsigned)i, *bytes, (unsigned long long)numel,
                            d->i64 ? "i64" : "f32");
    return NNM_OK;
}

/* Fills constant k (declared as a non-persistent buffer) with the values its
 * entry carries: little-endian f32 or i64, numel of them (constant_bytes
 * has checked the text's length). On the meta device the text is checked
 * and nothing is written. */
static nnm_status constant_fill(nnm_env *env, const char *key, size_t i, const tensor_decl *d,
                                nnm_tensor *t) {
    const nnm_host *h = env->host;
    size_t bytes, numel;
    nnm_status st = constant_bytes(env, key, i, d, &bytes, &numel);
    if (st != NNM_OK)
        return st;
    const size_t width = d->i64 ? 8u : 4u;
    unsigned char *raw = malloc(bytes ? bytes : 1);
    if (raw == NULL)
        return h->set_error(env, NNM_E_NOMEM, "config.%s[%u]: out of memory for the values", key,
                            (unsigned)i);
    size_t got = 0;
    if (!b64_decode(d->data, raw, bytes, &got)) {
        free(raw);
        return h->set_error(env, NNM_E_INVALID,
                            "config.%s[%u]: the data is not base64 of %zu bytes (%llu %s values, "
                            "little-endian)",
                            key, (unsigned)i, bytes, (unsigned long long)numel,
                            d->i64 ? "i64" : "f32");
    }
    st = NNM_OK;
    if (bytes > 0 && h->device(env).type != GRAPH_DEVICE_META) {
        /* the values as the host's own numbers (the text is little-endian) */
        for (size_t k = 0; k < numel; k++) {
            unsigned char *p = raw + k * width;
            if (width == 4) {
                const uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                   (uint32_t)p[3] << 24;
                memcpy(p, &u, 4);
            } else {
                uint64_t u = 0;
                for (int b = 7; b >= 0; b--)
                    u = u << 8 | p[b];
                memcpy(p, &u, 8);
            }
        }
        const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
        nnm_tensor *src = NULL;
        st = h->tensor_from_host(env, d->ndim, d->shape, d->i64 ? i64 : NNM_F32, raw, &src);
        if (st == NNM_OK)
            st = h->op_update(env, t, src, 0.0, 1.0);
        h->tensor_release(src);
    }
    free(raw);
    return st;
}

/* Declares the tensors of config.parameters, config.buffers or
 * config.constants (non-persistent buffers holding the entry's values). */
static nnm_status parse_tensors(nnm_env *env, graph_state *s, const char *key,
                                const char *const *entries, size_t n) {
    const nnm_host *h = env->host;
    const int kind = strcmp(key, "constants") == 0 ? GRAPH_CONST
                     : strcmp(key, "buffers") == 0 ? GRAPH_BUFFER
                                                   : GRAPH_PARAM;
    if (kind == GRAPH_CONST && n > 0 &&
        (!NNM_HOST_HAS(h, buffer_new_v2) || !NNM_HOST_HAS(h, tensor_from_host) ||
         !NNM_HOST_HAS(h, op_update)))
        return h->set_error(env, NNM_E_VERSION,
                            "config.constants needs the host slots buffer_new_v2, "
                            "tensor_from_host and op_update (this host, ABI %u.%u, lacks them)",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    char q[GRAPH_SHOW];
    for (size_t i = 0; i < n; i++) {
        span e = span_of(entries[i]);
        char *buf = malloc(e.n + 1);
        if (buf == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's tensors");
        tensor_decl d;
        nnm_status st = tensor_parse(env, key, i, e, buf, &d);
        if (st != NNM_OK) {
            free(buf);
            return st;
        }
        const uint32_t k = s->n_tensors;
        s->tensors[k] = (graph_tensor){buf, NULL, kind, (uint32_t)i};
        s->n_tensors = k + 1;
        uint32_t other = sym_insert(s, GRAPH_REF_TENSOR | k);
        if (other != GRAPH_NONE) {
            s->n_tensors = k; /* the hash does not hold it */
            s->tensors[k].name = NULL;
            if (other & GRAPH_REF_INPUT)
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.%s[%u]: '%s' is the name of a graph input", key,
                                  (unsigned)i, shown_z(buf, q));
            else {
                const graph_tensor *t = &s->tensors[other & ~GRAPH_REF_KIND];
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.%s[%u]: duplicate name '%s' (as %s[%u])", key,
                                  (unsigned)i, shown_z(buf, q),
                                  graph_tensor_keys[t->kind], (unsigned)t->entry);
            }
            free(buf);
            return st;
        }
        if (kind == GRAPH_PARAM) {
            st = h->param_new(env, buf, d.ndim, d.shape, d.init, d.a, d.b, &s->tensors[k].t);
        } else if (kind == GRAPH_CONST) {
            const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
            size_t bytes, numel;
            st = constant_bytes(env, key, i, &d, &bytes, &numel);
            if (st == NNM_OK)
                st = h->buffer_new_v2(env, buf, d.ndim, d.shape, d.i64 ? i64 : NNM_F32,
                                      NNM_INIT_ZEROS, 0.0, 0.0, 0 /* not in the state dict */,
                                      &s->tensors[k].t);
            if (st == NNM_OK)
                st = constant_fill(env, key, i, &d, s->tensors[k].t);
        } else if (!d.i64 && (d.init == NNM_INIT_ZEROS || d.init == NNM_INIT_ONES)) {
            /* the 1.0 slot: such a graph runs on older hosts too */
            st = h->buffer_new(env, buf, d.ndim, d.shape, d.init, 0.0, 1, &s->tensors[k].t);
        } else if (NNM_HOST_HAS(h, buffer_new_v2)) {
            const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
            st = h->buffer_new_v2(env, buf, d.ndim, d.shape, d.i64 ? i64 : NNM_F32, d.init, d.a,
                                  d.b, 1, &s->tensors[k].t);
        } else {
            return h->set_error(env, NNM_E_VERSION,
                                "config.%s[%u]: %s buffer needs the host slot buffer_new_v2 "
                                "(this host, ABI %u.%u, lacks it)",
                                key, (unsigned)i, d.i64 ? "an i64" : "a randomly initialised",
                                (unsigned)h->abi_major, (unsigned)h->abi_minor);
        }
        if (st != NNM_OK)
            return st; /* the host said why */
    }
    return NNM_OK;
}

/* config.reads (1.2): descendants' tensors the graph reads by their dotted
 * state-dict names ("emb.weight"); found by host->descendant_tensor when the
 * graph is mapped and again at each forward. */
static nnm_status parse_reads(nnm_env *env, graph_state *s, const char *const *entries, size_t n) {
    const nnm_host *h = env->host;
    char q[GRAPH_SHOW];
    if (n > 0 && !NNM_HOST_HAS(h, descendant_tensor))
        return h->set_error(env, NNM_E_VERSION,
                            "config.reads needs the host slot descendant_tensor (this host, ABI "
                            "%u.%u, lacks it)",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    for (size_t i = 0; i < n; i++) {
        span e = span_of(entries[i]);
        char *buf = malloc(e.n + 1);
        if (buf == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's reads");
        size_t len;
        uint32_t nc, hl;
        if (!whole_name(e, buf, &len, &nc, &hl) || nc < 2 || !utf8_ok(buf)) {
            free(buf);
            return h->set_error(env, NNM_E_INVALID,
                                "config.reads[%u]: expected \"module.path.tensor\" (a "
                                "descendant's parameter or buffer), got \"%s\"",
                                (unsigned)i, shown(e, q));
        }
        const uint32_t k = s->n_tensors;
        s->tensors[k] = (graph_tensor){buf, NULL, GRAPH_READ, (uint32_t)i};
        s->n_tensors = k + 1;
        uint32_t other = sym_insert(s, GRAPH_REF_TENSOR | k);
        if (other != GRAPH_NONE) {
            s->n_tensors = k;
            s->tensors[k].name = NULL;
            nnm_status st;
            if (other & GRAPH_REF_INPUT)
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.reads[%u]: '%s' is the name of a graph input",
                                  (unsigned)i, shown_z(buf, q));
            else {
                const graph_tensor *t = &s->tensors[other & ~GRAPH_REF_KIND];
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.reads[%u]: duplicate name '%s' (as %s[%u])", (unsigned)i,
                                  shown_z(buf, q), graph_tensor_keys[t->kind],
                                  (unsigned)t->entry);
            }
            free(buf);
            return st;
        }
    }
    return NNM_OK;
}

/* Looks up the descendants' tensors of config.reads (borrowed). */
static nnm_status resolve_reads(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    char q[GRAPH_SHOW];
    for (uint32_t k = 0; k < s->n_tensors; k++) {
        graph_tensor *t = &s->tensors[k];
        if (t->kind != GRAPH_READ)
            continue;
        t->t = NULL;
        nnm_status st = h->descendant_tensor(env, t->name, &t->t);
        if (st == NNM_E_NOT_FOUND)
            return h->set_error(env, NNM_E_INVALID,
                                "config.reads[%u]: no parameter or buffer '%s' below the graph",
                                (unsigned)t->entry, shown_z(t->name, q));
        if (st != NNM_OK)
            return st;
    }
    return NNM_OK;
}

/* ---- config.nodes ------------------------------------------------------ */

static nnm_status syntax_error(nnm_env *env, uint32_t index, span entry, int v2) {
    char q[GRAPH_SHOW];
    return env->host->set_error(env, NNM_E_INVALID, "config.nodes[%u]: expected \"%s\", got \"%s\"",
                                (unsigned)index,
                                v2 ? "node = module(input, ...)" : "name: input, input, ...",
                                shown(entry, q));
}

/* Where an entry's REFs are: the text between ':' (v1) or the parentheses
 * (v2). */
typedef struct node_text {
    span args;
} node_text;

/* Splits entry i into the node's name, the module's path and its REF text. */
static nnm_status node_split(nnm_env *env, graph_state *s, uint32_t i, span e, node_text *nt) {
    const nnm_host *h = env->host;
    graph_node *nd = &s->nodes[i];
    char *name = malloc(e.n + 1), *path = NULL;
    if (name == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");
    size_t len, plen;
    uint32_t nc, hl = 0;
    const size_t eq = find_top(e, '=');
    const int v2 = eq < e.n;
    if (!v2) {
        size_t c = find_top(e, ':');
        if (c == e.n || !whole_name(sub(e, 0, c), name, &len, &nc, &hl))
            goto syntax;
        path = name;
        plen = len;
        nt->args = trim(sub(e, c + 1, e.n));
    } else {
        if (!whole_name(sub(e, 0, eq), name, &len, &nc, &hl))
            goto syntax;
        path = malloc(e.n + 1);
        if (path == NULL) {
            free(name);
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");
        }
        span rhs = trim(sub(e, eq + 1, e.n));
        if (!read_name(&rhs, path, &plen, &nc, &hl))
            goto syntax;
        rhs = trim(rhs);
        if (rhs.n < 2 || rhs.p[0] != '(' || rhs.p[rhs.n - 1] != ')')
            goto syntax;
        nt->args = trim(sub(rhs, 1, rhs.n - 1));
    }
    nd->name = name;
    nd->path = path;
    nd->head_len = hl;
    nd->is_path = hl < plen;
    return NNM_OK;
syntax:
    if (path != name)
        free(path);
    free(name);
    return syntax_error(env, i, e, v2);
}

/* Node names first (so a node may read one listed after it), then REFs. */
static nnm_status parse_nodes(nnm_env *env, graph_state *s, const char *const *entries, size_t n) {
    const nnm_host *h = env->host;
    char q[GRAPH_SHOW];
    node_text *text = calloc(n ? n : 1, sizeof *text);
    size_t max_len = 0;
    if (text == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");
    nnm_status st = NNM_OK;
    size_t n_refs = 0;
    for (size_t i = 0; i < n; i++) {
        span e = span_of(entries[i]);
        if (e.n > max_len)
            max_len = e.n;
        if ((st = node_split(env, s, (uint32_t)i, e, &text[i])) != NNM_OK)
            goto out;
        graph_node *nd = &s->nodes[i];
        s->n_nodes = (uint32_t)i + 1;
        uint32_t other = sym_insert(s, (uint32_t)i);
        if (other != GRAPH_NONE) {
            if (other & GRAPH_REF_INPUT)
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.nodes[%u]: node '%s' has the name of a graph input",
                                  (unsigned)i, shown_z(nd->name, q));
            else if (other & GRAPH_REF_TENSOR)
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.nodes[%u]: node '%s' has the name of a graph %s",
                                  (unsigned)i, shown_z(nd->name, q),
                                  tensor_kind(&s->tensors[other & ~GRAPH_REF_KIND]));
            else
                st = h->set_error(env, NNM_E_INVALID, "config.nodes[%u]: duplicate node '%s'",
                                  (unsigned)i, shown_z(nd->name, q));
            goto out;
        }
        if (nd->is_path &&
            (!NNM_HOST_HAS(h, descendant_info) || !NNM_HOST_HAS(h, descendant_call))) {
            st = h->set_error(env, NNM_E_VERSION,
                              "config.nodes[%u]: '%s' names a descendant, which needs the host "
                              "slots descendant_info and descendant_call (this host, ABI %u.%u, "
                              "lacks them)",
                              (unsigned)i, shown_z(nd->path, q), (unsigned)h->abi_major,
                              (unsigned)h->abi_minor);
            goto out;
        }
        span args = text[i].args;
        nd->first_ref = (uint32_t)n_refs;
        nd->n_refs = args.n > 0 ? 1 + count_top(args, ',') : 0;
        if (nd->n_refs > NNM_MAX_IO) {
            st = h->set_error(env, NNM_E_LIMIT,
                              "config.nodes[%u]: %u inputs; a call takes at most %u", (unsigned)i,
                              (unsigned)nd->n_refs, (unsigned)NNM_MAX_IO);
            goto out;
        }
        n_refs += nd->n_refs;
        if (nd->n_refs > s->max_refs)
            s->max_refs = nd->n_refs;
    }
    s->refs = calloc(n_refs ? n_refs : 1, sizeof *s->refs);
    char *buf = malloc(max_len + 1);
    if (s->refs == NULL || buf == NULL) {
        free(buf);
        st = h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's edges");
        goto out;
    }
    s->n_refs = (uint32_t)n_refs;

    for (size_t i = 0; i < n && st == NNM_OK; i++) {
        span rest = text[i].args;
        const graph_node *nd = &s->nodes[i];
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            size_t comma = find_top(rest, ',');
            span tok = trim(sub(rest, 0, comma));
            st = ref_resolve(env, s, "nodes", (uint32_t)i, tok, buf, &s->refs[nd->first_ref + j]);
            if (st != NNM_OK)
                break;
            if (comma < rest.n)
                rest = sub(rest, comma + 1, rest.n);
        }
    }
    free(buf);
out:
    free(text);
    return st;
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
        span tok = trim(span_of(buf[i]));
        char *name = malloc(tok.n + 1);
        if (name == NULL)
            return h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's outputs");
        st = ref_resolve(env, s, "outputs", (uint32_t)i, tok, name, &s->outputs[i]);
        free(name);
        if (st != NNM_OK)
            return st;
    }
    s->n_outputs = (uint32_t)n;
    return NNM_OK;
}
/* config.output_names: checked here, so a message names the entry, then
 * handed to the host (set_output_names copies them). */
static nnm_status parse_output_names(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    const char *buf[GRAPH_MAX_IO];
    char q[GRAPH_SHOW];
    size_t n = 0;
    nnm_status st = h->config_strs(env, "output_names", buf, GRAPH_MAX_IO, &n);
    if (st == NNM_E_NOT_FOUND) { /* optional: outputs without names */
        graph_clear_error(env);
        return NNM_OK;
    }
    if (st != NNM_OK)
        return st; /* the host named the key and the problem */
    if (n != s->n_outputs)
        return h->set_error(env, NNM_E_INVALID,
                            "config.output_names: %u name%s for %u output%s (one per entry of "
                            "config.outputs)",
                            (unsigned)n, n == 1 ? "" : "s", (unsigned)s->n_outputs,
                            s->n_outputs == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        span z = span_of(buf[i]);
        int bad = z.n == 0 || !utf8_ok(buf[i]);
        for (size_t k = 0; !bad && k < z.n; k++)
            bad = control_len(z.p + k, z.n - k) != 0;
        if (bad)
            return h->set_error(env, NNM_E_INVALID,
                                "config.output_names[%u]: invalid name '%s' (non-empty, no control "
                                "characters)",
                                (unsigned)i, shown(z, q));
        for (size_t j = 0; j < i; j++)
            if (strcmp(buf[j], buf[i]) == 0)
                return h->set_error(env, NNM_E_INVALID,
                                    "config.output_names[%u]: duplicate name '%s' (as "
                                    "output_names[%u])",
                                    (unsigned)i, shown(z, q), (unsigned)j);
    }
    if (!NNM_HOST_HAS(h, set_output_names))
        return h->set_error(env, NNM_E_VERSION,
                            "config.output_names needs the host slot set_output_names (this host, "
                            "ABI %u.%u, lacks it)",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    return h->set_output_names(env, buf, (uint32_t)n);
}

/* "config.nodes: cycle through 'a' -> 'b' -> 'a'" for the nodes
 * stack[from..top] and back to stack[from]. */
static nnm_status cycle_error(nnm_env *env, const graph_state *s, const uint32_t *stack,
                              uint32_t from, uint32_t top) {
    char path[512];
    size_t len = 0;
    for (uint32_t i = from; i <= top + 1 && len < sizeof path; i++) {
        char q[GRAPH_SHOW];
        const char *name = shown_z(s->nodes[stack[i <= top ? i : from]].name, q);
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
                if (r->src & GRAPH_REF_KIND)
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
            if (!(r->src & GRAPH_REF_KIND) && s->nodes[r->src].last_use < nd->step)
                s->nodes[r->src].last_use = nd->step;
        }
    }
    for (uint32_t i = 0; i < s->n_outputs; i++)
        if (!(s->outputs[i].src & GRAPH_REF_KIND))
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
    const char **params = malloc(GRAPH_MAX_TENSORS * sizeof *params);
    const char **buffers = malloc(GRAPH_MAX_TENSORS * sizeof *buffers);
    const char **consts = malloc(GRAPH_MAX_TENSORS * sizeof *consts);
    const char **reads = malloc(GRAPH_MAX_TENSORS * sizeof *reads);
    const char *inputs[GRAPH_MAX_IO];
    nnm_status st;
    if (s == NULL || entries == NULL || params == NULL || buffers == NULL || consts == NULL ||
        reads == NULL) {
        st = h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's state");
        goto fail;
    }
    size_t n = 0, n_in = 0, n_params = 0, n_buffers = 0, n_consts = 0, n_reads = 0;
    st = h->config_strs(env, "inputs", inputs, GRAPH_MAX_IO, &n_in);
    if (st == NNM_E_NOT_FOUND) { /* optional: the default is ["x"] */
        graph_clear_error(env);
        inputs[0] = "x";
        n_in = 1;
    } else if (st != NNM_OK) {
        goto fail; /* the host named the key and the problem */
    }
    if ((st = optional_strs(env, "parameters", params, GRAPH_MAX_TENSORS, &n_params)) != NNM_OK ||
        (st = optional_strs(env, "buffers", buffers, GRAPH_MAX_TENSORS, &n_buffers)) != NNM_OK ||
        (st = optional_strs(env, "constants", consts, GRAPH_MAX_TENSORS, &n_consts)) != NNM_OK ||
        (st = optional_strs(env, "reads", reads, GRAPH_MAX_TENSORS, &n_reads)) != NNM_OK)
        goto fail;
    if ((st = h->config_strs(env, "nodes", entries, GRAPH_MAX_NODES, &n)) != NNM_OK)
        goto fail; /* the host named the key and the problem */
    const size_t n_tens = n_params + n_buffers + n_consts + n_reads;
    const size_t n_syms = n_in + n_tens + n;
    uint32_t cap = 8;
    while (cap < 2 * n_syms)
        cap *= 2;
    s->hash = calloc(cap, sizeof *s->hash);
    s->hash_mask = cap - 1;
    s->nodes = calloc(n ? n : 1, sizeof *s->nodes);
    s->tensors = calloc(n_tens ? n_tens : 1, sizeof *s->tensors);
    if (s->hash == NULL || s->nodes == NULL || s->tensors == NULL) {
        st = h->set_error(env, NNM_E_NOMEM, "out of memory for the graph's nodes");
        goto fail;
    }
    if ((st = parse_inputs(env, s, inputs, n_in)) != NNM_OK)
        goto fail;
    if ((st = parse_tensors(env, s, "parameters", params, n_params)) != NNM_OK)
        goto fail;
    if ((st = parse_tensors(env, s, "buffers", buffers, n_buffers)) != NNM_OK)
        goto fail;
    if ((st = parse_tensors(env, s, "constants", consts, n_consts)) != NNM_OK)
        goto fail;
    if ((st = parse_reads(env, s, reads, n_reads)) != NNM_OK)
        goto fail;
    if ((st = parse_nodes(env, s, entries, n)) != NNM_OK)
        goto fail;
    if ((st = parse_outputs(env, s)) != NNM_OK)
        goto fail;
    if ((st = parse_output_names(env, s)) != NNM_OK)
        goto fail;
    if ((st = topo_sort(env, s)) != NNM_OK)
        goto fail;
    free(entries);
    free(params);
    free(buffers);
    free(consts);
    free(reads);
    *self = s;
    return NNM_OK;
fail:
    free(entries);
    free(params);
    free(buffers);
    free(consts);
    free(reads);
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
    uint32_t child; /* GRAPH_NONE: not (yet) found; a dotted path keeps it */
    int found;
    int32_t n_inputs, n_outputs;
} graph_link;

/* The children by name, for the mapping: an open-addressing table of child
 * index + 1 (0 empty). */
typedef struct child_table {
    uint32_t mask;
    uint32_t *slot;
    const char **names; /* borrowed from child_info, valid during the mapping */
} child_table;

static uint32_t child_find(const child_table *t, span name) {
    for (uint32_t i = hash_span(name) & t->mask;; i = (i + 1) & t->mask) {
        uint32_t v = t->slot[i];
        if (v == 0)
            return GRAPH_NONE;
        if (span_is(name, t->names[v - 1]))
            return v - 1;
    }
}

/* Maps every plain path to its child and looks every dotted path up, checks
 * that every child is called (by a node or through a dotted path's first
 * component), and sizes the forward's scratch arrays; on failure the
 * previous mapping (if any) stays. */
static nnm_status graph_map(nnm_env *env, graph_state *s) {
    const nnm_host *h = env->host;
    char q[GRAPH_SHOW], q2[GRAPH_SHOW];
    if (s->busy)
        return h->set_error(env, NNM_E_STATE,
                            "graph: children changed while the graph is running");
    const uint32_t n_children = h->child_count(env);
    uint32_t cap = 8;
    while (cap < 2u * n_children)
        cap *= 2;
    graph_link *link = malloc((s->n_nodes ? s->n_nodes : 1) * sizeof *link);
    child_table ct = {cap - 1, calloc(cap, sizeof(uint32_t)),
                      calloc(n_children ? n_children : 1, sizeof(const char *))};
    int32_t *arity = malloc(2 * (n_children ? n_children : 1) * sizeof *arity);
    uint8_t *called = calloc(n_children ? n_children : 1, 1);
    nnm_status st = NNM_OK;
    if (link == NULL || ct.slot == NULL || ct.names == NULL || arity == NULL || called == NULL) {
        st = h->set_error(env, NNM_E_NOMEM, "out of memory mapping the graph's children");
        goto out;
    }
    for (uint32_t i = 0; i < s->n_nodes; i++)
        link[i] = (graph_link){GRAPH_NONE, 0, NNM_ARITY_ANY, NNM_ARITY_ANY};
    for (uint32_t c = 0; c < n_children; c++) {
        const char *name = NULL;
        arity[2 * c] = arity[2 * c + 1] = NNM_ARITY_ANY;
        if ((st = h->child_info(env, c, &name, &arity[2 * c], &arity[2 * c + 1])) != NNM_OK)
            goto out;
        ct.names[c] = name ? name : "";
        span nm = span_of(ct.names[c]);
        for (uint32_t i = hash_span(nm) & ct.mask;; i = (i + 1) & ct.mask)
            if (ct.slot[i] == 0) {
                ct.slot[i] = c + 1;
                break;
            }
    }
    /* Which children the nodes call (a dotted path: its first component). */
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        uint32_t c = child_find(&ct, (span){nd->path, nd->head_len});
        if (c == GRAPH_NONE)
            continue;
        called[c] = 1;
        if (!nd->is_path)
            link[i] = (graph_link){c, 1, arity[2 * c], arity[2 * c + 1]};
    }
    /* A child whose tensors the graph reads (config.reads) is used too. */
    for (uint32_t k = 0; k < s->n_tensors; k++) {
        const graph_tensor *t = &s->tensors[k];
        if (t->kind != GRAPH_READ)
            continue;
        const char *dot = strchr(t->name, '.');
        uint32_t c = child_find(&ct, (span){t->name, dot ? (size_t)(dot - t->name) : 0});
        if (c != GRAPH_NONE)
            called[c] = 1;
    }
    for (uint32_t c = 0; c < n_children; c++)
        if (!called[c]) {
            shown_z(ct.names[c], q);
            st = h->set_error(env, NNM_E_INVALID,
                              "child '%s' is not a node of the graph (config.nodes has no entry "
                              "\"%s: ...\" nor \"%s.NAME: ...\")",
                              q, q, q);
            goto out;
        }
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        if (nd->is_path) {
            int32_t n_in = NNM_ARITY_ANY, n_out = NNM_ARITY_ANY;
            st = h->descendant_info(env, nd->path, &n_in, &n_out);
            if (st == NNM_E_NOT_FOUND) {
                st = h->set_error(env, NNM_E_INVALID,
                                  "config.nodes[%u]: no descendant module named '%s'",
                                  (unsigned)i, shown_z(nd->path, q));
                goto out;
            }
            if (st != NNM_OK)
                goto out; /* the host said why */
            link[i] = (graph_link){GRAPH_NONE, 1, n_in, n_out};
        } else if (!link[i].found) {
            st = h->set_error(env, NNM_E_INVALID, "config.nodes[%u]: no child module named '%s'",
                              (unsigned)i, shown_z(nd->path, q));
            goto out;
        }
    }
    if ((st = resolve_reads(env, s)) != NNM_OK)
        goto out;
    uint64_t n_slots = 0;
    for (uint32_t i = 0; i < s->n_nodes; i++) {
        const graph_node *nd = &s->nodes[i];
        const graph_link *l = &link[i];
        const char *what = nd->is_path ? "descendant" : "child";
        if (l->n_inputs >= 0 && (uint32_t)l->n_inputs != nd->n_refs) {
            st = h->set_error(env, NNM_E_INVALID,
                              "config.nodes[%u]: %s '%s' takes %d input%s, the node lists %u",
                              (unsigned)i, what, shown_z(nd->path, q), (int)l->n_inputs,
                              l->n_inputs == 1 ? "" : "s", (unsigned)nd->n_refs);
            goto out;
        }
        if (l->n_outputs >= 0 && nd->n_used_out > (uint32_t)l->n_outputs) {
            char site[32];
            uint32_t port = 0;
            port_site(s, i, (uint32_t)l->n_outputs, site, sizeof site, &port);
            st = h->set_error(env, NNM_E_INVALID, "config.%s: '%s:%u': %s '%s' has %d output%s",
                              site, shown_z(nd->name, q), (unsigned)port, what,
                              shown_z(nd->path, q2), (int)l->n_outputs,
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
    free(ct.slot);
    free(ct.names);
    free(arity);
    free(called);
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
        return in[r->src & ~GRAPH_REF_KIND];
    if (r->src & GRAPH_REF_TENSOR)
        return s->tensors[r->src & ~GRAPH_REF_KIND].t;
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
    if (!s->mapped || h->child_count(env) != s->mapped_children) {
        if ((st = graph_map(env, s)) != NNM_OK)
            return st;
    } else if ((st = resolve_reads(env, s)) != NNM_OK) { /* a tie may have changed them */
        return st;
    }

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
            st = h->descendant_call(env, nd->path, args, nd->n_refs, vals + nd->slot,
                                    nd->n_call_out);
        else
            st = h->child_call(env, nd->child, args, nd->n_refs, vals + nd->slot,
                               nd->n_call_out);
        if (st != NNM_OK)
            break; /* the call path has set the message, with the module's path */
        /* Drop what no later node reads. */
        for (uint32_t j = 0; j < nd->n_refs; j++) {
            const graph_ref *r = &s->refs[nd->first_ref + j];
            if (!(r->src & GRAPH_REF_KIND) && s->nodes[r->src].last_use == p)
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

/* A decoded name as a node string writes it: each component bare, or
 * between backticks (a backtick doubled). */
static void put_name(repr_buf *b, const char *name) {
    const char *p = name;
    for (;;) {
        size_t n = strcspn(p, ".");
        int bare = n > 0;
        for (size_t i = 0; i < n; i++)
            bare = bare && is_bare(p[i]);
        if (bare) {
            char tmp[2] = {0, 0};
            for (size_t i = 0; i < n; i++) {
                tmp[0] = p[i];
                put(b, tmp);
            }
        } else {
            put(b, "`");
            for (size_t i = 0; i < n; i++) {
                char tmp[2] = {p[i], 0};
                put(b, p[i] == '`' ? "``" : tmp);
            }
            put(b, "`");
        }
        if (p[n] != '.')
            break;
        put(b, ".");
        p += n + 1;
    }
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
            put_name(&b, sym_name(s, r->src));
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
     "one \"child: input, input, ...\" or \"node = module(input, ...)\" per node (a module may "
     "be a dotted descendant: \"heads.0\"); an input is NAME or NAME:K"},
    {"outputs", NNM_CONFIG_STRS, 0, "NAME or NAME:K returned, in order (default: the last node)"},
    {"parameters", NNM_CONFIG_STRS, 0,
     "the graph's own parameters: \"name: [d0, d1, ...] init\" (init zeros, ones, normal(m, s), "
     "uniform(a, b))"},
    {"buffers", NNM_CONFIG_STRS, 0,
     "the graph's own buffers: \"name: [d0, d1, ...] dtype init\" (dtype f32 or i64)"},
    {"output_names", NNM_CONFIG_STRS, 0,
     "one name per output: the model returns a dict (nnm_module_output_names)"},
    {"constants", NNM_CONFIG_STRS, 0,
     "tensors of fixed values, not in the state dict: \"name: [d0, d1, ...] dtype base64:DATA\" "
     "(dtype f32 or i64, DATA the little-endian values)"},
    {"reads", NNM_CONFIG_STRS, 0,
     "descendants' parameters or buffers the graph reads, by dotted name (\"emb.weight\"), "
     "usable as REFs"},
};

static const nnm_layer_vtable graph_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "graph",
    .version_major = 1,
    .version_minor = 2,
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
    .description = "Graph container: a DAG of calls to its children with named edges (residuals, "
                   "multi-input/multi-output layers, shared modules, tensors of its own)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = graph_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(graph_plugin)
