/* runtime/state/state_internal.h - files and state dicts: atomic replacement, safetensors lookups, state-dict walks.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_STATE_INTERNAL_H
#define NNM_STATE_INTERNAL_H

#include "../core/core_internal.h"

/* atomic_file.c - replace a file atomically (temp file, fsync, rename,
 * fsync of the directory). open, then write to a->fd, then commit or abort;
 * commit and a failed open leave nothing to clean up. */
typedef struct nnm__atomic {
    int fd;
    char *tmp;
    const char *path;             /* borrowed, or `real` */
    char *real;                   /* a symbolic link's target (the file replaced), or NULL */
} nnm__atomic;
nnm_status nnm__atomic_open(nnm_ctx *ctx, const char *path, nnm__atomic *a);
nnm_status nnm__atomic_commit(nnm_ctx *ctx, nnm__atomic *a);
void nnm__atomic_abort(nnm__atomic *a);
/* write(2) until done; -1 with errno on failure. */
int nnm__write_all(int fd, const void *buf, size_t len);
/* safetensors.c */
/* Index (file order) of the entry named `name`, or -1; sets no error. */
int64_t nnm__safetensors_lookup(const nnm_safetensors *st, const char *name);
/* "F32", "BF16", ... for a dtype; "?" if it has no safetensors name. */
const char *nnm__st_dtype_name(nnm_dtype dt);

/* state_dict.c: checkpoint support (runtime/state/checkpoint.c). */
/* Visits m's state dict (parameters and persistent buffers under their
 * dotted keys, in state_dict order; shared tensors under every name).
 * Tensors are borrowed; names are valid during the call. */
nnm_status nnm__state_dict_visit(nnm_module *m, nnm_tensor_visit_fn fn, void *user);
/* 1 when file entry e can load into t (same shape; dtype equal or converted
 * to f32). Otherwise 0 and, when why != NULL, "key: file [2] vs module [3]". */
int nnm__state_entry_fits(const nnm_st_entry *e, const nnm_tensor *t, const char *key, char *why,
                          size_t cap);
/* Copies entry e (already checked with nnm__state_entry_fits) into the
 * contiguous tensor t, on t's device. */
nnm_status nnm__state_copy_entry(nnm_ctx *ctx, nnm_tensor *t, const nnm_st_entry *e);

#endif /* NNM_STATE_INTERNAL_H */
