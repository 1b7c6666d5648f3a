/* runtime/data/data_internal.h - what the dataset readers and the loader share.
 *
 * A dataset is N samples of one input shape and one target shape. Inputs stay
 * in the element type they were stored in (u8 images stay u8: one copy of the
 * data, or none at all for a safetensors file, whose mapping is read in
 * place); the loader converts each batch to f32 as it gathers it. Targets are
 * small and are held converted: i64 (class indices, or any integer target) or
 * f32.
 */
#ifndef NNM_DATA_INTERNAL_H
#define NNM_DATA_INTERNAL_H

#include "../internal.h"

/* How input elements are stored. */
enum nnm__elem {
    NNM__ELEM_U8 = 0,
    NNM__ELEM_I8,
    NNM__ELEM_U16,
    NNM__ELEM_I16,
    NNM__ELEM_I32,
    NNM__ELEM_F16,
    NNM__ELEM_BF16,
    NNM__ELEM_F32,
    NNM__ELEM_F64
};

struct nnm_dataset {
    nnm_ctx *ctx;                 /* retained */
    char *source;                 /* for messages: "a.idx + b.idx" or "d.safetensors" */
    int64_t n;                    /* samples visible (nnm_dataset_limit may lower it) */
    int64_t n_stored;             /* samples held */
    int32_t ndim;                 /* per-sample input shape */
    int64_t shape[NNM_MAX_DIMS];
    int64_t sample_numel;
    int elem;                     /* enum nnm__elem */
    const unsigned char *inputs;  /* n_stored * sample_numel elements */
    void *owned_inputs;           /* what to free (NULL when borrowed from st) */
    int32_t t_ndim;               /* per-sample target shape; 0 for a class index */
    int64_t t_shape[NNM_MAX_DIMS];
    int64_t t_numel;
    int t_float;                  /* 1: f32 targets, 0: i64 */
    int has_targets;              /* 0: an inputs-only dataset (nnm predict) */
    int64_t *labels;              /* i64 targets, owned */
    float *tvalues;               /* f32 targets, owned */
    int64_t n_classes;            /* 1 + largest i64 target; 0 for f32 targets */
    int64_t n_ignored;            /* i64 targets equal to NNM_DATASET_IGNORE_INDEX */
    nnm_safetensors *st;          /* kept open while inputs point into it */
};

/* nnm_dataset_options resolved: defaults filled in, names never NULL. */
typedef struct nnm__dataset_opts {
    uint32_t flags;
    uint64_t max_bytes;
    const char *inputs_name, *targets_name;
} nnm__dataset_opts;
/* Checks and resolves opts (NULL: every default). */
nnm_status nnm__dataset_opts_get(nnm_ctx *ctx, const nnm_dataset_options *opts,
                                 nnm__dataset_opts *out);

/* Element size of an enum nnm__elem. */
size_t nnm__elem_size(int elem);
/* Converts `n` stored elements at src to f32 as a * x + b. */
void nnm__elem_to_f32(int elem, const unsigned char *src, size_t n, float a, float b, float *dst);
/* An empty dataset bound to ctx with its source text; NULL on OOM. */
nnm_dataset *nnm__dataset_new(nnm_ctx *ctx, const char *source);
/* Fills n_classes and n_ignored from the labels and checks them; an error
 * names `targets_what` (the targets file, or file and tensor) and the sample. */
nnm_status nnm__dataset_finish(nnm_dataset *ds, const char *targets_what);

#endif
