/* tools/nnm/train_common.h - what `nnm train`, `nnm eval` and `nnm predict`
 * share: the training settings (the manifest's "training" section, then the
 * command-line flags), opening the data, checking that the model's output and
 * the loss fit the data before the first step, and the evaluation loop.
 * Reference: docs/training.md. Public API only (nnmod.h). */
#ifndef NNM_TOOLS_TRAIN_COMMON_H
#define NNM_TOOLS_TRAIN_COMMON_H

#include "cli.h"

#define TRAIN_MAX_PATH 4096
/* The most values one sample of input_shape may have (2^40). */
#define TRAIN_MAX_SAMPLE_NUMEL ((int64_t)1 << 40)
/* The most epochs (and steps, batch sizes) a setting or a checkpoint may give. */
#define TRAIN_MAX_EPOCHS ((int64_t)1 << 40)
/* The class target that counts nothing (PyTorch's and the losses' ignore_index). */
#define TRAIN_IGNORE_INDEX (-100)

/* Where one split's data is: an IDX pair or a safetensors file. */
typedef struct data_spec {
    char inputs[TRAIN_MAX_PATH];  /* IDX inputs, or the safetensors file */
    char targets[TRAIN_MAX_PATH]; /* IDX targets; "" for safetensors */
    int set;
} data_spec;

/* Every setting of a run, with its default. */
typedef struct train_params {
    char optimizer[16];           /* sgd, adam, adamw */
    double lr;                    /* < 0: the optimizer's default */
    double momentum, dampening;
    int nesterov, amsgrad;
    double beta1, beta2, eps;
    double weight_decay;          /* < 0: the optimizer's default */
    char schedule[16];            /* none, step, cosine */
    int64_t step_size;
    double gamma, min_lr;
    int64_t batch_size, epochs;
    int drop_last;                /* skip the last partial training batch */
    char loss[32];                /* a layer of the losses plugin */
    double label_smoothing;
    uint64_t seed;
    data_spec train, test;
    char inputs_name[128], targets_name[128];
    int32_t input_ndim;           /* 0: the dataset's sample shape */
    int64_t input_shape[NNM_MAX_DIMS];
    int normalize;                /* 1: (x * scale - mean) / std */
    int have_mean, have_std;
    double mean, std, scale;      /* scale 0: 1/255 for u8 data */
    uint64_t max_data_bytes;      /* 0: the library's default (4 GiB) */
    int allow_nonfinite;          /* keep NaN/inf data */
    nnm_device device;            /* "device" / --device: cpu (default), cuda:N */
} train_params;

/* Defaults, then the manifest's "training" section (NULL: none). Relative
 * data paths in the section are relative to the manifest's directory. Prints
 * the error ("nnm CMD: FILE: training.KEY: ...") and returns 1 on a bad key
 * or value. */
int train_params_init(train_params *p, const char *cmd, const char *manifest_path,
                      const nnm_manifest *mf);
/* Applies the flag `name` (without "--") with value `v`. Returns 0, 2 after a
 * usage message, or -1 when `name` is not a training flag. */
int train_params_flag(train_params *p, const char *cmd, const char *name, const char *v);
/* The option table entries of the flags train_params_flag takes (ids from
 * `first` up), to append to a command's own; *n receives the count. */
const cli_opt *train_params_opts(int first, size_t *n);
/* Usage text of those flags. */
void train_params_usage(FILE *f);

/* The dataset options of p (limit, non-finite data, tensor names). */
nnm_dataset_options train_dataset_options(const train_params *p);
/* Opens a split (IDX pair or safetensors). Prints and returns 1 on failure. */
int train_open_data(nnm_ctx *ctx, const char *cmd, const train_params *p, const data_spec *d,
                    nnm_dataset **out);
/* Loader options for a split with p's normalisation and input shape. */
nnm_loader_options train_loader_options(const train_params *p, int shuffle);
/* Computes mean/std from ds when normalisation wants them and they were not
 * given. */
int train_fill_stats(nnm_ctx *ctx, const char *cmd, train_params *p, const nnm_dataset *ds);

/* Takes the input transform (scale, mean, std) a checkpoint of nnm train
 * recorded, when `path` has one; other files leave p as it is. A transform
 * that is incomplete, not a number or out of range (train_transform_check)
 * is refused by its key: printed, returns 1. */
/* NULL when x -> (x * scale - mean) / std is a sane input transform (scale
 * and std finite and > 0, mean finite, scale / std and |mean| / std at most
 * TRAIN_MAX_COEF); else what is wrong. */
#define TRAIN_MAX_COEF 1e12
const char *train_transform_check(double scale, double mean, double std);
int train_params_from_weights(nnm_ctx *ctx, const char *cmd, train_params *p, const char *path);

/* Moves the model to p->device (nothing when it is there). Prints "nnm CMD:
 * --device cuda:0: <the runtime's message>" and returns 1 on failure (no
 * CUDA device on this machine: NNM_E_NO_DEVICE), with the model untouched. */
int train_model_to_device(nnm_ctx *ctx, const char *cmd, const train_params *p,
                          nnm_module *model);
/* *out = t on `dev`: t itself (a new reference) when it is there, else a
 * copy (nnm_tensor_to). Release *out. */
nnm_status train_to_device(nnm_device dev, nnm_tensor *t, nnm_tensor **out);

/* The loss module named p->loss (its config from p). Prints on failure. */
int train_make_loss(nnm_ctx *ctx, const char *cmd, const train_params *p, nnm_module **out);

/* Runs one batch of `ds` through the model (eval mode, no grad) and checks
 * that the output and the loss fit the data: class targets need an output
 * [B, C] with C >= the classes seen; f32 targets an output of their shape.
 * Leaves the model in eval mode. Prints a message naming both sizes and
 * returns 1 when they do not fit. *n_out_classes gets C (0 for f32 targets). */
int train_check_fit(nnm_ctx *ctx, const char *cmd, const train_params *p, nnm_module *model,
                    nnm_module *loss, nnm_dataset *ds, const char *split, int64_t *n_out_classes);

/* Evaluation of a split: mean loss and, for class targets, accuracy and
 * (when confusion is not NULL: classes x classes counts, row = target) the
 * confusion matrix. The model is put in eval mode and grad mode off for the
 * loop (restored after). */
typedef struct eval_result {
    double loss;                  /* mean over the samples not ignored */
    double accuracy;              /* -1 for f32 targets; of the samples not ignored */
    int64_t samples;              /* evaluated, ignored ones included */
    int64_t ignored;              /* class target TRAIN_IGNORE_INDEX: in neither figure */
} eval_result;
int train_evaluate(nnm_ctx *ctx, const char *cmd, nnm_module *model, nnm_module *loss,
                   nnm_loader *ld, int64_t classes, int64_t *confusion, eval_result *r);

/* Index of the largest of v[0..n). */
int64_t train_argmax(const float *v, int64_t n);

#endif
