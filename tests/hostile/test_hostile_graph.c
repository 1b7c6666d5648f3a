/* tests/hostile/test_hostile_graph.c - graph v2 manifests a stranger wrote:
 * self-references and cycles, duplicate names, names with control bytes,
 * unterminated backticks, ports past any output, graph-owned tensors of
 * absurd sizes, names that collide with children, i64 buffers fed to f32
 * ops, more nodes than the graph takes, dynamic dims naming inputs and dims
 * that do not exist, nil and nested lists in configs. Each document goes
 * through nnm_manifest_parse and nnm_manifest_build (meta, then real) and
 * must fail with a precise status and a message naming the entry, never
 * print raw control bytes, crash or leak. */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

#define PLUGINS                                                                                        \
    "\"plugins\": {\"graph\": \"*\", \"add\": \"*\", \"mul\": \"*\", \"relu\": \"*\", \"linear\": \"*\", " \
    "\"identity\": \"*\", \"view\": \"*\", \"module_list\": \"*\", \"full\": \"*\", \"concat\": \"*\"}"

static int printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

/* The manifest {header, PLUGINS, "root": root}; parse then build with
 * flags. The first failing step must fail with want and a message holding
 * needle (NNM_OK: every step succeeds, *out gets the module if out). */
static void doc(const char *root, uint32_t flags, nnm_status want, const char *needle, nnm_module **out) {
    char *text = malloc(strlen(root) + 512);
    sprintf(text, "{\"format\": \"nnmod.manifest\", \"version\": 1, " PLUGINS ", \"root\": %s}", root);
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    nnm_status st = nnm_manifest_parse(g_ctx, text, strlen(text), NNM_MANIFEST_JSON, NULL, NULL, &mf);
    if (st == NNM_OK) st = nnm_manifest_build(mf, flags | NNM_BUILD_NO_WEIGHTS, &m);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    const int ok = st == want && (want == NNM_OK || strstr(msg, needle) != NULL);
    if (!ok)
        fprintf(stderr, "\n  %.200s\n    -> %s (want %s \"%s\"): %s\n", root, nnm_status_name(st), nnm_status_name(want),
                needle, st ? msg : "");
    CU_ASSERT_TRUE(ok);
    if (st != NNM_OK) {
        CU_ASSERT_TRUE(printable(msg));
        CU_ASSERT_PTR_NULL(m);
    }
    if (out != NULL) *out = m;
    else nnm_module_release(m);
    nnm_manifest_free(mf);
    free(text);
}

/* A graph root with the given config body and children. */
static void graph(const char *config, const char *children, nnm_status want, const char *needle) {
    char *root = malloc(strlen(config) + strlen(children) + 128);
    sprintf(root, "{\"type\": \"graph\", \"config\": {%s}, \"children\": [%s]}", config, children);
    doc(root, NNM_BUILD_META, want, needle, NULL);
    if (want != NNM_OK) doc(root, 0, want, needle, NULL);
    free(root);
}

#define RELU "{\"name\": \"relu\", \"type\": \"relu\"}"
#define ADD "{\"name\": \"add\", \"type\": \"add\"}"
#define FC "{\"name\": \"fc\", \"type\": \"linear\", \"config\": {\"in_features\": 2, \"out_features\": 2}}"

static void test_nodes(void) {
    LEAK_CHECK_BEGIN();
    graph("\"nodes\": [\"a = relu(a)\"]", RELU, NNM_E_INVALID, "config.nodes: cycle through 'a' -> 'a'");
    graph("\"nodes\": [\"a = relu(b)\", \"b = relu(a)\"]", RELU, NNM_E_INVALID, "cycle through 'a' -> 'b' -> 'a'");
    graph("\"nodes\": [\"a = relu(x)\", \"a = relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[1]: duplicate node 'a'");
    graph("\"nodes\": [\"x = relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: node 'x' has the name of a graph input");
    graph("\"nodes\": [\"`a\\u001b[2J` = relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]");
    graph("\"nodes\": [\"a = `re\\u0007lu`(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]");
    graph("\"nodes\": [\"a = `relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: expected \"node = module(input, ...)\"");
    graph("\"nodes\": [\"`` = relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]");
    graph("\"nodes\": [\"a = relu(x:16)\"]", RELU, NNM_E_INVALID, "bad input 'x:16'");
    graph("\"nodes\": [\"a = relu(x:99999999999999999999)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: bad input");
    graph("\"nodes\": [\"a = relu(x:1:2)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: bad input");
    graph("\"nodes\": [\"a = relu(x)\"], \"outputs\": [\"a:15\"]", RELU, NNM_E_INVALID, "'a:15'");
    graph("\"nodes\": [\"a = relu(x)\"], \"outputs\": [\"a:-1\"]", RELU, NNM_E_INVALID, "config.outputs[0]: bad reference 'a:-1'");
    graph("\"nodes\": [\"a = relu.0(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: no descendant module named 'relu.0'");
    graph("\"nodes\": [\"a = relu(x)\", \"b = nothere(a)\"]", RELU, NNM_E_INVALID, "root.config.nodes[1]: no child module named 'nothere'");
    graph("\"nodes\": [\"a = relu(x, x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]: child 'relu' takes 1 input, the node lists 2");
    graph("\"nodes\": [\"a = relu(x)\", \"b = relu(y)\"]", RELU, NNM_E_INVALID, "config.nodes[1]: unknown input 'y'");
    graph("\"nodes\": []", RELU, NNM_E_INVALID, "config.nodes: empty");
    graph("\"nodes\": [\"a = relu(x)\"], \"outputs\": []", RELU, NNM_E_INVALID, "config.outputs: empty");
    graph("\"nodes\": [\"a = relu(x)\"], \"inputs\": [\"x\", \"x\"]", RELU, NNM_E_INVALID, "config.inputs[1]: duplicate input 'x'");
    graph("\"nodes\": [\"a = relu(x)\"], \"inputs\": [\"x\\u001b\"]", RELU, NNM_E_INVALID, "config.inputs[0]: invalid name");
    /* the graph calling itself by an empty or dotted-from-nowhere path */
    graph("\"nodes\": [\"a = .relu(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]");
    graph("\"nodes\": [\"a = relu.(x)\"]", RELU, NNM_E_INVALID, "config.nodes[0]");
    /* a child no node calls */
    graph("\"nodes\": [\"a = relu(x)\"]", RELU ", " ADD, NNM_E_INVALID, "child 'add' is not a node of the graph");
    /* output names: too many, duplicate, control bytes */
    graph("\"nodes\": [\"a = relu(x)\"], \"output_names\": [\"o\", \"p\"]", RELU, NNM_E_INVALID, "config.output_names: 2 names for 1 output");
    graph("\"nodes\": [\"a = relu(x)\"], \"outputs\": [\"a\", \"x\"], \"output_names\": [\"o\", \"o\"]", RELU, NNM_E_INVALID,
          "config.output_names[1]: duplicate name 'o'");
    graph("\"nodes\": [\"a = relu(x)\"], \"output_names\": [\"o\\u009b2J\"]", RELU, NNM_E_INVALID, "config.output_names[0]: invalid name");
    LEAK_CHECK_END();
}

static void test_many_nodes(void) {
    LEAK_CHECK_BEGIN();
    /* 16385 nodes (one past the bound), and 16384 in a chain (at the bound) */
    for (int n = 16384; n <= 16385; n++) {
        size_t cap = (size_t)n * 32 + 256;
        char *cfg = malloc(cap);
        size_t at = (size_t)sprintf(cfg, "\"nodes\": [\"n0 = relu(x)\"");
        for (int i = 1; i < n; i++) at += (size_t)sprintf(cfg + at, ", \"n%d = relu(n%d)\"", i, i - 1);
        sprintf(cfg + at, "]");
        graph(cfg, RELU, n > 16384 ? NNM_E_LIMIT : NNM_OK, "16384");
        free(cfg);
    }
    LEAK_CHECK_END();
}

static void test_counts(void) {
    LEAK_CHECK_BEGIN();
    /* 4097 parameters, 17 inputs, 17 outputs: one past each bound */
    char *cfg = malloc(4097 * 24 + 256);
    size_t at = (size_t)sprintf(cfg, "\"parameters\": [");
    for (int i = 0; i < 4097; i++) at += (size_t)sprintf(cfg + at, "%s\"p%d: [1]\"", i ? ", " : "", i);
    sprintf(cfg + at, "], \"nodes\": [\"a = relu(x)\"]");
    graph(cfg, RELU, NNM_E_LIMIT, "config.parameters");
    at = (size_t)sprintf(cfg, "\"inputs\": [");
    for (int i = 0; i < 17; i++) at += (size_t)sprintf(cfg + at, "%s\"x%d\"", i ? ", " : "", i);
    sprintf(cfg + at, "], \"nodes\": [\"a = relu(x0)\"]");
    graph(cfg, RELU, NNM_E_LIMIT, "config.inputs");
    at = (size_t)sprintf(cfg, "\"outputs\": [");
    for (int i = 0; i < 17; i++) at += (size_t)sprintf(cfg + at, "%s\"a\"", i ? ", " : "");
    sprintf(cfg + at, "], \"nodes\": [\"a = relu(x)\"]");
    graph(cfg, RELU, NNM_E_LIMIT, "config.outputs");
    free(cfg);
    LEAK_CHECK_END();
}

static void test_tensors(void) {
    LEAK_CHECK_BEGIN();
    /* sizes whose product overflows int64, and ones that only exceed the limit */
    graph("\"parameters\": [\"w: [999999999999999999, 999999999999999999]\"], \"nodes\": [\"a = add(x, w)\"]", ADD,
          NNM_E_LIMIT, "w");
    graph("\"parameters\": [\"w: [4294967296, 4294967296, 4294967296]\"], \"nodes\": [\"a = add(x, w)\"]", ADD,
          NNM_E_LIMIT, "w");
    graph("\"buffers\": [\"b: [100000000000] i64\"], \"nodes\": [\"a = add(x, b)\"]", ADD, NNM_E_LIMIT, "b");
    graph("\"parameters\": [\"w: [1, 2, 3, 4, 5, 6, 7, 8, 9]\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID,
          "config.parameters[0]: 9 dims; at most 8");
    graph("\"parameters\": [\"w: [-1]\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID, "bad size '-1'");
    graph("\"parameters\": [\"w: [1e3]\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID, "bad size '1e3'");
    graph("\"parameters\": [\"w: [2] normal(0, nan)\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID,
          "config.parameters[0]: expected \"name: [d0, d1, ...] init\"");
    graph("\"parameters\": [\"w: [2] uniform(1e309, 2)\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID,
          "config.parameters[0]");
    graph("\"parameters\": [\"w: [2]\", \"w: [3]\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID,
          "config.parameters[1]: duplicate name 'w' (as parameters[0])");
    graph("\"parameters\": [\"w: [2]\"], \"buffers\": [\"w: [3]\"], \"nodes\": [\"a = add(x, w)\"]", ADD, NNM_E_INVALID,
          "duplicate name 'w'");
    graph("\"parameters\": [\"`w\\u001b`: [2]\"], \"nodes\": [\"a = add(x, x)\"]", ADD, NNM_E_INVALID, "config.parameters[0]");
    graph("\"parameters\": [\"`a.b`: [2]\"], \"nodes\": [\"a = add(x, x)\"]", ADD, NNM_E_INVALID, "config.parameters[0]");
    graph("\"buffers\": [\"b: [2] i64 normal(0, 1)\"], \"nodes\": [\"a = add(x, b)\"]", ADD, NNM_E_INVALID,
          "an i64 buffer is initialised with zeros or ones");
    graph("\"buffers\": [\"b: [2] f16\"], \"nodes\": [\"a = add(x, b)\"]", ADD, NNM_E_INVALID, "unknown dtype or init 'f16'");
    /* a tensor named like a child: state-dict names "fc" and "fc.weight" */
    graph("\"parameters\": [\"fc: [2]\"], \"nodes\": [\"a = fc(x)\", \"b = add(a, fc)\"]", FC ", " ADD, NNM_E_EXISTS,
          "root.children[0] (linear): 'fc' is already a child, parameter or buffer");
    LEAK_CHECK_END();
}

/* an i64 buffer fed to an f32 op is refused by the op, naming it */
static void test_i64_buffer_forward(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    doc("{\"type\": \"graph\", \"config\": {\"buffers\": [\"idx: [2] i64 ones\"], \"nodes\": [\"a = add(x, idx)\"]}, "
        "\"children\": [" ADD "]}",
        0, NNM_OK, "", &m);
    if (m) {
        nnm_tensor *x = NULL, *y = NULL;
        const int64_t shape[1] = {2};
        CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, 1, shape, (const float[]){1, 2}, &x), NNM_OK);
        CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_DTYPE, "add");
        CU_ASSERT_PTR_NULL(y);
        nnm_tensor_release(x);
    }
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* one tensor returned several times (node output, graph input, parameter),
 * a node nothing reads, forward then backward through all of it */
static void test_repeated_outputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    doc("{\"type\": \"graph\", \"config\": {\"parameters\": [\"w: [2] ones\"], \"nodes\": [\"u = relu(x)\", "
        "\"a = add(x, w)\", \"b = relu(a)\"], \"outputs\": [\"a\", \"a\", \"x\", \"w\", \"a:0\", \"b\", \"w\"]}, "
        "\"children\": [" RELU ", " ADD "]}",
        0, NNM_OK, "", &m);
    if (m) {
        nnm_tensor *x = NULL, *out[7] = {0};
        const int64_t shape[1] = {2};
        CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, 1, shape, (const float[]){-1, 2}, &x), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
        for (int rep = 0; rep < 3; rep++) {
            CHECK_STATUS(nnm_module_call(m, &x, 1, out, 7), NNM_OK);
            /* asked for fewer or more outputs than the graph returns */
            nnm_tensor *few[2] = {0}, *many[8] = {0};
            CHECK_ERROR(nnm_module_call(m, &x, 1, few, 2), NNM_E_SHAPE, "7");
            CHECK_ERROR(nnm_module_call(m, &x, 1, many, 8), NNM_E_SHAPE, "7");
            for (int i = 0; i < 8; i++) CU_ASSERT_PTR_NULL(many[i]);
            CU_ASSERT_PTR_NULL(few[0]);
            nnm_tensor *s = NULL;
            int32_t d0 = 0;
            CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, out[5], &d0, 1, 0, &s), NNM_OK);
            CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
            nnm_tensor_release(s);
            for (int i = 0; i < 7; i++) {
                nnm_tensor_release(out[i]);
                out[i] = NULL;
            }
        }
        nnm_tensor_release(x);
        CHECK_STATUS(nnm_module_zero_grad(m), NNM_OK);
    }
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* dynamic dims that name inputs and dims that do not exist */
static void test_dynamic_dims(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    static const char *const cfgs[] = {
        "{\"shape\": [0, -1], \"from_input\": [99, -1], \"from_dim\": [0, -1]}",
        "{\"shape\": [0, -1], \"from_input\": [0, -1], \"from_dim\": [-100, -1]}",
        "{\"shape\": [0, -1], \"from_input\": [0, -1], \"from_dim\": [9223372036854775807, -1]}",
        "{\"shape\": [0, -1], \"from_input\": [-9223372036854775807, -1], \"from_dim\": [0, -1]}",
    };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        char root[512];
        snprintf(root, sizeof root, "{\"type\": \"graph\", \"config\": {\"inputs\": [\"x\", \"y\"], \"nodes\": "
                 "[\"a = view(x, y)\"]}, \"children\": [{\"name\": \"view\", \"type\": \"view\", \"config\": %s}]}", cfgs[k]);
        m = NULL;
        char *text = malloc(strlen(root) + 512);
        sprintf(text, "{\"format\": \"nnmod.manifest\", \"version\": 1, " PLUGINS ", \"root\": %s}", root);
        nnm_manifest *mf = NULL;
        nnm_status st = nnm_manifest_parse(g_ctx, text, strlen(text), NNM_MANIFEST_JSON, NULL, NULL, &mf);
        if (st == NNM_OK) st = nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m);
        if (st == NNM_OK) {
            nnm_tensor *x = NULL, *y = NULL, *out = NULL;
            const int64_t s1[2] = {2, 3};
            CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, 2, s1, NULL, &x), NNM_OK);
            CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, 2, s1, NULL, &y), NNM_OK);
            nnm_tensor *in[2] = {x, y};
            st = nnm_module_call(m, in, 2, &out, 1);
            CU_ASSERT_PTR_NULL(out);
            nnm_tensor_release(out);
            nnm_tensor_release(x);
            nnm_tensor_release(y);
        }
        const char *msg = nnm_ctx_errmsg(g_ctx);
        if (st == NNM_OK || !strstr(msg, "view") || !strstr(msg, "from_"))
            fprintf(stderr, "\n  %s: %s: %s\n", cfgs[k], nnm_status_name(st), msg);
        CU_ASSERT_NOT_EQUAL(st, NNM_OK);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "view"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "from_"));
        nnm_module_release(m);
        nnm_manifest_free(mf);
        free(text);
    }
    LEAK_CHECK_END();
}

/* config values a manifest cannot hold: nil, nested lists, maps */
static void test_config_values(void) {
    LEAK_CHECK_BEGIN();
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [[\"a = relu(x)\"]]}, \"children\": [" RELU "]}", 0, NNM_E_TYPE,
        "root.config.nodes[0]: lists hold numbers or strings, got list", NULL);
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": null}, \"children\": [" RELU "]}", 0, NNM_E_TYPE, "root.config.nodes: expected an integer, float, bool, string or list, got nil", NULL);
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [\"a = relu(x)\", 3]}, \"children\": [" RELU "]}", 0, NNM_E_TYPE,
        "root.config.nodes[1]: list mixes strings and numbers", NULL);
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [\"a = relu(x)\"], \"outputs\": {\"a\": 1}}, \"children\": [" RELU "]}", 0,
        NNM_E_TYPE, "root.config.outputs: expected an integer, float, bool, string or list, got map", NULL);
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [\"a = relu(x)\"], \"kwargs\": 1}, \"children\": [" RELU "]}", 0,
        NNM_E_INVALID, "root.config.kwargs", NULL);
    /* a child named with control bytes, or twice */
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [\"a = relu(x)\"]}, \"children\": [{\"name\": \"re\\u001blu\", \"type\": \"relu\"}]}",
        0, NNM_E_INVALID, "root.children[0].name", NULL);
    doc("{\"type\": \"graph\", \"config\": {\"nodes\": [\"a = relu(x)\"]}, \"children\": [" RELU ", " RELU "]}", 0, NNM_E_EXISTS,
        "root.children[1].name: duplicate name 'relu'", NULL);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("hostile_graph", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "node strings: cycles, duplicates, control bytes, ports", test_nodes);
    CU_add_test(s, "node count at and past the bound", test_many_nodes);
    CU_add_test(s, "graph-owned tensors: sizes, names, dtypes", test_tensors);
    CU_add_test(s, "parameters, inputs and outputs past their bounds", test_counts);
    CU_add_test(s, "an i64 buffer into an f32 op", test_i64_buffer_forward);
    CU_add_test(s, "one tensor returned several times, forward and backward", test_repeated_outputs);
    CU_add_test(s, "dynamic dims naming what is not there", test_dynamic_dims);
    CU_add_test(s, "config values no manifest holds", test_config_values);
    return tu_run();
}
