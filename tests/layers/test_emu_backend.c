/* tests/layers/test_emu_backend.c - the emu test backend (tests/emu_backend.h)
 * and the runtime's handling of a device type that is neither the CPU nor
 * CUDA (issue 22: the CPU goldens run on a device whose memory the host
 * cannot read, see docs/testing.md):
 *   - emu wraps every slot the cpu backend fills (emu_setup refuses an
 *     out-of-date wrapper);
 *   - its memory is tagged: a tensor's data is a non-canonical address, and
 *     a host read of it kills the process (checked in a forked child);
 *   - copies both ways, fill, a module moved there and back bit for bit;
 *   - the runtime picks a backend by any DLPack device type and names the
 *     device in messages ("ext_dev:0"); a type nobody serves is refused
 *     naming it ("cuda_managed");
 *   - docs/abi.md's table of backend slots (section 10) has one row per slot
 *     of nnm_backend_vtable as abi/nnmod/plugin.h declares it, in order.
 */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emu_backend.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static void test_wraps_every_slot(void) {
    /* emu_setup ran in suite_init; emu_fill compared every function slot */
    CU_ASSERT_PTR_NOT_NULL(g_emu_cpu);
    CU_ASSERT_EQUAL(emu_fill(), 0);
    CU_ASSERT_EQUAL(g_emu_vt.device_type, EMU_DEVICE_TYPE);
    CU_ASSERT_EQUAL(g_emu_vt.flags, g_emu_cpu->flags);
}

static void test_memory_is_not_host_memory(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, EMU_DEVICE, NNM_F32, 1, (int64_t[]){16}, &t), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    CU_ASSERT_EQUAL(d->device.type, EMU_DEVICE_TYPE);
    CU_ASSERT_TRUE(emu_is_tagged(d->data));
    /* x86-64 and AArch64 user addresses have bits 47..63 all zero: this one
     * does not, so no load or store through it reaches memory */
    const uintptr_t hi = (uintptr_t)d->data >> 47;
    CU_ASSERT_TRUE(hi != 0 && hi != ((uintptr_t)-1 >> 47));
    /* a host read of it dies (segfault, or ASan's report of one) */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* no ASan report noise in the test's log: the parent checks the death */
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2);
        volatile const float *p = (const float *)d->data;
        float v = p[0];
        _exit(v == 12345.0f ? 3 : 0); /* reached only if the read worked */
    }
    CU_ASSERT_TRUE_FATAL(pid > 0);
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0); /* the read did not work */
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void test_copies_and_moves(void) {
    LEAK_CHECK_BEGIN();
    /* fill and read back (the runtime's device-to-host copy) */
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, EMU_DEVICE, NNM_F32, 2, (int64_t[]){3, 4}, &t), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    nnm_tensor *u = NULL;
    CHECK_STATUS(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, t, 0.0, &u), NNM_OK); /* 0 * garbage: maybe NaN */
    nnm_tensor_release(u);
    u = NULL;
    /* a linear layer moved to emu and back: the same bits, and the same
     * outputs on both devices */
    nnm_module *lin = tu_linear(g_ctx, "linear", 4, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lin);
    tu_named p = tu_params_of(lin);
    float w0[12], w1[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(tu_named_get(&p, "weight"), w0, 12), NNM_OK);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 4}, (float[]){1, 2, 3, 4, -1, -2, 0.5f, 8});
    nnm_tensor *y_cpu = NULL, *y_emu = NULL;
    CHECK_STATUS(tu_call1(lin, x, &y_cpu), NNM_OK);
    CHECK_STATUS(nnm_module_to(lin, EMU_DEVICE), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_desc_get(tu_named_get(&p, "weight"))->device.type, EMU_DEVICE_TYPE);
    CU_ASSERT_TRUE(emu_is_tagged(nnm_tensor_desc_get(tu_named_get(&p, "weight"))->data));
    /* a CPU input is refused, naming both devices */
    CHECK_ERROR(tu_call1(lin, x, &y_emu), NNM_E_DEVICE, "ext_dev:0");
    /* an emu input: placed through the tag (what tests/test_device.h does) */
    nnm_tensor *xe = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, EMU_DEVICE, NNM_F32, 2, (int64_t[]){2, 4}, &xe), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xe);
    memcpy(emu_untag(nnm_tensor_desc_get(xe)->data), tu_cpu_data(x), 8 * sizeof(float));
    CHECK_STATUS(tu_call1(lin, xe, &y_emu), NNM_OK);
    float a[6], b[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y_cpu, a, 6), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y_emu, b, 6), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    CHECK_STATUS(nnm_module_to(lin, (nnm_device){NNM_DEVICE_CPU, 0}), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(tu_named_get(&p, "weight"), w1, 12), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(w0, w1, sizeof w0), 0);
    nnm_tensor_release(y_cpu);
    nnm_tensor_release(y_emu);
    nnm_tensor_release(xe);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    nnm_module_release(lin);
    LEAK_CHECK_END();
}

static void test_other_device_types(void) {
    nnm_tensor *t = NULL;
    /* kDLCUDAManaged: a DLPack type no loaded backend serves */
    CHECK_ERROR(nnm_tensor_new(g_ctx, (nnm_device){13, 0}, NNM_F32, 1, (int64_t[]){1}, &t), NNM_E_DEVICE,
                "no backend for device type 'cuda_managed' (13)");
    CU_ASSERT_PTR_NULL(t);
    /* past the table: refused, no crash */
    CHECK_ERROR(nnm_tensor_new(g_ctx, (nnm_device){4096, 0}, NNM_F32, 1, (int64_t[]){1}, &t), NNM_E_DEVICE,
                "unknown device type 4096");
    CU_ASSERT_PTR_NULL(t);
    /* emu has one device */
    CU_ASSERT_NOT_EQUAL(nnm_tensor_new(g_ctx, (nnm_device){EMU_DEVICE_TYPE, 1}, NNM_F32, 1, (int64_t[]){1}, &t),
                        NNM_OK);
    CU_ASSERT_PTR_NULL(t);
}

/* The whole file as a NUL-terminated string (free it), or NULL. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (int c; (c = fgetc(f)) != EOF;) {
        if (n + 1 >= cap) {
            cap = cap ? 2 * cap : 65536;
            char *b = realloc(buf, cap);
            if (b == NULL) break;
            buf = b;
        }
        buf[n++] = (char)c;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    return buf;
}

static void test_docs_list_every_slot(void) {
    char *h = slurp(NNM_SOURCE_DIR "/abi/nnmod/plugin.h"), *doc = slurp(NNM_SOURCE_DIR "/docs/abi.md");
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    char *vt = strstr(h, "typedef struct nnm_backend_vtable {");
    char *vt_end = vt ? strstr(vt, "} nnm_backend_vtable;") : NULL;
    char *tab = strstr(doc, "<!-- backend-slots");
    char *tab_end = tab ? strstr(tab, "<!-- /backend-slots -->") : NULL;
    CU_ASSERT_TRUE_FATAL(vt && vt_end && tab && tab_end);
    *vt_end = 0;
    *tab_end = 0;
    /* the slots in declaration order: "(*name)(" */
    int slots = 0, rows = 0;
    const char *at = tab;
    for (const char *p = strstr(vt, "(*"); p != NULL; p = strstr(p + 2, "(*")) {
        const char *q = strchr(p, ')');
        if (q == NULL || q - p - 2 <= 0 || q - p - 2 > 60) continue;
        char row[96];
        snprintf(row, sizeof row, "| `%.*s` |", (int)(q - p - 2), p + 2);
        slots++;
        const char *r = strstr(at, row);
        if (r == NULL) {
            fprintf(stderr, "\n  docs/abi.md section 10 lacks (in order) the row %s\n", row);
            CU_FAIL("a backend slot missing from docs/abi.md");
        } else {
            at = r + strlen(row);
        }
    }
    for (const char *p = strstr(tab, "\n| `"); p != NULL; p = strstr(p + 1, "\n| `")) rows++;
    CU_ASSERT_TRUE(slots >= 38);
    CU_ASSERT_EQUAL(rows, slots); /* and no row for a slot that is not there */
    free(h);
    free(doc);
}

static int suite_init(void) {
    if (emu_setup(NNM_TEST_CPU_PLUGIN) != 0 || tu_ctx_new(&g_ctx) != 0) return 1;
    return nnm_plugin_register_static(g_ctx, &emu_desc, "test_emu_backend") != NNM_OK;
}

static int suite_clean(void) {
    const int r = tu_ctx_free(&g_ctx);
    emu_teardown();
    return r;
}

int main(void) {
    CU_pSuite s = tu_suite("emu test backend", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "wraps every cpu slot", test_wraps_every_slot);
    CU_add_test(s, "its memory is not host memory", test_memory_is_not_host_memory);
    CU_add_test(s, "copies, fills, a module moved there and back", test_copies_and_moves);
    CU_add_test(s, "other device types", test_other_device_types);
    CU_add_test(s, "docs/abi.md lists every backend slot", test_docs_list_every_slot);
    return tu_run();
}
