/* tools/nnm/trace.c - Chrome/Perfetto trace export (see trace.h).
 *
 * Forward spans come from the profiler (nnm_ctx_set_profiler: one event per
 * module call, with its path, type, start and end). Backward spans come from
 * each module's full backward hooks: the pre-hook fires when the gradients of
 * the module's outputs are ready, the hook when those of its inputs are, so
 * the span between covers every backward node of the module's call, and a
 * container's span holds its children's. Events are written as they come
 * (the file grows with the run; nothing is kept in memory but a small stack). */
#define _POSIX_C_SOURCE 200809L
#include "trace.h"

#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRACE_STACK 256

typedef struct open_span {
    nnm_module *m;
    uint64_t start;
} open_span;

struct trace {
    FILE *f;
    const char *cmd;
    const char *path;
    int first;
    uint64_t t0;
    open_span stack[TRACE_STACK];
    int depth;
};

uint64_t trace_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* JSON strings escape every control byte (C0, DEL, C1): module paths come
 * from manifests. */
#define json_str cli_json_str

static void emit(trace *t, const char *name, const char *suffix, const char *cat,
                 const char *type, uint64_t start, uint64_t end) {
    if (start < t->t0) start = t->t0;
    if (end < start) end = start;
    fputs(t->first ? "\n" : ",\n", t->f);
    t->first = 0;
    char full[600];
    /* a root (the model, a loss) has the empty path: its type names it */
    snprintf(full, sizeof full, "%s%s", name && *name ? name : type ? type : "(root)", suffix);
    fputs("{\"name\": ", t->f);
    json_str(t->f, full);
    fprintf(t->f, ", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, \"pid\": 1, \"tid\": 1",
            cat, (double)(start - t->t0) / 1000.0, (double)(end - start) / 1000.0);
    if (type) {
        fputs(", \"args\": {\"type\": ", t->f);
        json_str(t->f, type);
        fputc('}', t->f);
    }
    fputc('}', t->f);
}

static void on_profile(void *user, const nnm_profile_event *ev) {
    trace *t = user;
    emit(t, ev->path, "", "forward", ev->type, ev->start_ns, ev->end_ns);
}

static nnm_status on_bw_pre(void *user, nnm_module *m, nnm_tensor **g, uint32_t n) {
    (void)g;
    (void)n;
    trace *t = user;
    if (t->depth < TRACE_STACK) t->stack[t->depth] = (open_span){m, trace_now()};
    t->depth++;
    return NNM_OK;
}

static nnm_status on_bw(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                        nnm_tensor *const *gout, uint32_t n_out) {
    (void)gin;
    (void)n_in;
    (void)gout;
    (void)n_out;
    trace *t = user;
    uint64_t end = trace_now();
    /* the innermost open span of this module */
    for (int i = (t->depth < TRACE_STACK ? t->depth : TRACE_STACK) - 1; i >= 0; i--) {
        if (t->stack[i].m != m) continue;
        char path[512];
        nnm_module_path(m, path, sizeof path);
        emit(t, path, " (backward)", "backward", nnm_module_type(m), t->stack[i].start, end);
        memmove(&t->stack[i], &t->stack[i + 1], (size_t)(t->depth - 1 - i) * sizeof t->stack[0]);
        t->depth--;
        return NNM_OK;
    }
    return NNM_OK;
}

trace *trace_open(nnm_ctx *ctx, const char *cmd, const char *path) {
    trace *t = calloc(1, sizeof *t);
    if (!t) {
        cli_failf(cmd, "out of memory");
        return NULL;
    }
    t->f = fopen(path, "w");
    if (!t->f) {
        cli_failf(cmd, "%s: cannot write the trace: %s", path, strerror(errno));
        free(t);
        return NULL;
    }
    t->cmd = cmd;
    t->path = path;
    t->first = 1;
    t->t0 = trace_now();
    fputs("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [", t->f);
    nnm_ctx_set_profiler(ctx, on_profile, t);
    return t;
}

static nnm_status watch(void *user, const char *name, nnm_module *m) {
    (void)name;
    nnm_status s = nnm_module_register_full_backward_pre_hook(m, on_bw_pre, user, NULL);
    if (!s) s = nnm_module_register_full_backward_hook(m, on_bw, user, NULL);
    return s;
}

int trace_watch_backward(trace *t, nnm_module *root) {
    nnm_status s = nnm_module_named_modules(root, watch, t);
    if (s) return cli_failf(t->cmd, "cannot trace the backward pass: %s",
                           nnm_ctx_errmsg(nnm_module_ctx(root))), 1;
    return 0;
}

void trace_span(trace *t, const char *name, const char *cat, uint64_t start_ns, uint64_t end_ns) {
    if (t) emit(t, name, "", cat, NULL, start_ns, end_ns);
}

int trace_close(trace *t, nnm_ctx *ctx) {
    if (!t) return 0;
    nnm_ctx_set_profiler(ctx, NULL, NULL);
    fputs("\n]}\n", t->f);
    int bad = ferror(t->f) != 0;
    bad |= fclose(t->f) != 0;
    if (bad) cli_failf(t->cmd, "%s: error writing the trace", t->path);
    free(t);
    return bad;
}
