/* runtime/autograd/optim_internal.h - what the optimizers expose to checkpoints (runtime/state/checkpoint.c).
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_OPTIM_INTERNAL_H
#define NNM_OPTIM_INTERNAL_H

#include "../core/core_internal.h"

/* optim.c: checkpoint support (runtime/state/checkpoint.c). */
enum nnm__optim_kind { NNM__OPTIM_SGD, NNM__OPTIM_ADAM, NNM__OPTIM_ADAMW };
#define NNM__OPTIM_SLOTS 5
/* State names by slot: momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq,
 * step (the [1] f32 CPU mirror of the count; Adam only). */
extern const char *const nnm__optim_slot_names[NNM__OPTIM_SLOTS];

typedef struct nnm__optim_info {
    int kind;                     /* enum nnm__optim_kind */
    int stepped;                  /* a step has run (groups frozen) */
    double momentum, dampening;   /* SGD */
    int nesterov;
    double beta1, beta2, eps;     /* Adam, AdamW */
    int amsgrad;
    uint32_t n_groups, n_params;
    nnm_ctx *ctx;                 /* borrowed */
    nnm_module *module;           /* borrowed: the module it was made over */
} nnm__optim_info;

typedef struct nnm__optim_pstate {
    const char *name;             /* dotted name relative to info.module; owned by the optimizer */
    nnm_tensor *param;            /* borrowed */
    uint32_t group;
    int64_t step;                 /* updates taken */
    nnm_tensor *slot[NNM__OPTIM_SLOTS]; /* NULL: no such state (yet) */
} nnm__optim_pstate;

void nnm__optim_info_get(const nnm_optim *o, nnm__optim_info *out);
void nnm__optim_group_get(const nnm_optim *o, uint32_t g, double *lr, double *weight_decay);
/* Parameter i (< n_params), in the optimizer's order; slots borrowed. */
void nnm__optim_param_get(const nnm_optim *o, uint32_t i, nnm__optim_pstate *out);
/* Replaces the shared hyper-parameters and the stepped flag with info's,
 * each group's lr and weight decay with lr[g]/weight_decay[g] (n_groups
 * entries), and every parameter's step and slots with ps[i]'s (n_params
 * entries, the optimizer's order; group membership is not changed). Takes
 * the slot references of ps and releases the old ones. Cannot fail. */
void nnm__optim_restore(nnm_optim *o, const nnm__optim_info *info, const double *lr,
                        const double *weight_decay, const nnm__optim_pstate *ps);

#endif /* NNM_OPTIM_INTERNAL_H */
