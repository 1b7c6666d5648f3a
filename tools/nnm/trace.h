/* tools/nnm/trace.h - `nnm train --trace FILE`: the call path's profiler
 * events and each module's backward, as a Chrome/Perfetto trace (JSON array
 * of complete "X" events; chrome://tracing and ui.perfetto.dev open it). */
#ifndef NNM_TOOLS_TRACE_H
#define NNM_TOOLS_TRACE_H

#include <stdio.h>

#include "nnmod/nnmod.h"

typedef struct trace trace;

/* Opens FILE and installs the profiler on ctx. Returns NULL (message printed)
 * on failure. */
trace *trace_open(nnm_ctx *ctx, const char *cmd, const char *path);
/* Registers backward pre-hooks and hooks on every module of the tree, so each
 * module's backward becomes a span "PATH (backward)". */
int trace_watch_backward(trace *t, nnm_module *root);
/* A span of the training loop itself ("step", "optimizer.step", ...). */
uint64_t trace_now(void);
void trace_span(trace *t, const char *name, const char *cat, uint64_t start_ns, uint64_t end_ns);
/* Writes the end of the document and closes the file; returns 0 or 1 (printed). */
int trace_close(trace *t, nnm_ctx *ctx);

#endif
