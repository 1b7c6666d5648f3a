/* plugins/cuda/cuda_dnn_conv.c - the conv and conv_backward slots through
 * cuDNN: forward, backward data, backward filter; groups, stride, padding,
 * dilation, 1-3 spatial dims (1-d as 2-d of height 1).
 *
 * Per call: the plan (cuda_dnn_plan.c) turns the args into descriptor
 * numbers, the context's reusable descriptors are set from it, and the
 * algorithm comes from the device's cache, keyed by the whole geometry and
 * the problem (forward, data, filter). On a miss, cudnnGet*Algorithm_v7
 * (cuDNN's heuristics, no trial runs: what PyTorch does without
 * cudnn.benchmark) ranks the algorithms, and the first that succeeds in
 * order, runs in the allowed math and whose workspace can be had from
 * cuda_scratch_get is taken and remembered. Workspaces come from and go back
 * to cuda_scratch_* (the context's caching allocator) around each call.
 *
 * Math: strict f32 (CUDNN_FMA_MATH), the cpu backend's and cuBLAS's
 * default, so results agree with the CPU to f32 rounding; NNM_CUDNN_ALLOW_TF32=1
 * lets cuDNN use TF32 tensor cores (PyTorch's torch.backends.cudnn.allow_tf32).
 *
 * Declines (NNM_E_UNSUPPORTED; the runtime then runs im2col + gemm): what the
 * plan declines (transposed, uneven padding, int overflow, empty), cuDNN
 * absent, and any geometry cuDNN refuses or has no algorithm for.
 */
#include "cuda_dnn_lib.h"

#include <stdio.h>
#include <string.h>

/* A workspace above this is cuDNN reporting nonsense (PyTorch's bound). */
#define CUDA_DNN_MAX_WORKSPACE ((size_t)1 << 40)

/* One ranked candidate, whatever the problem's perf struct. */
typedef struct conv_cand {
    int algo;
    cudnnStatus_t status;
    size_t memory;
    int math_type;
} conv_cand;

#define CONV_MAX_CANDS 16

/* cuDNN's ranking for problem `kind` (descriptors set). */
static cudnnStatus_t conv_rank(const struct cuda_dnn_state *d, cudnnHandle_t h, int kind,
                               conv_cand *c, int *n) {
    cudnnStatus_t cs;
    int got = 0;
    *n = 0;
    if (kind == CUDA_DNN_CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        memset(r, 0, sizeof r);
        cs = d->fn.cudnnGetConvolutionForwardAlgorithm_v7(h, d->xd, d->wd, d->cd, d->yd,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, r);
        for (int i = 0; cs == CUDNN_STATUS_SUCCESS && i < got && i < CONV_MAX_CANDS; i++)
            c[(*n)++] = (conv_cand){(int)r[i].algo, r[i].status, r[i].memory, (int)r[i].mathType};
    } else if (kind == CUDA_DNN_CONV_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        memset(r, 0, sizeof r);
        cs = d->fn.cudnnGetConvolutionBackwardDataAlgorithm_v7(
            h, d->wd, d->yd, d->cd, d->xd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, r);
        for (int i = 0; cs == CUDNN_STATUS_SUCCESS && i < got && i < CONV_MAX_CANDS; i++)
            c[(*n)++] = (conv_cand){(int)r[i].algo, r[i].status, r[i].memory, (int)r[i].mathType};
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        memset(r, 0, sizeof r);
        cs = d->fn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            h, d->xd, d->yd, d->cd, d->wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, r);
        for (int i = 0; cs == CUDNN_STATUS_SUCCESS && i < got && i < CONV_MAX_CANDS; i++)
            c[(*n)++] = (conv_cand){(int)r[i].algo, r[i].status, r[i].memory, (int)r[i].mathType};
    }
    return cs;
}

static const char *const conv_kind_name[3] = {"forward", "backward data", "backward filter"};

/* The algorithm for problem `kind` of plan p (descriptors set) and its
 * workspace (*ws, to be given back with cuda_scratch_put; NULL when 0
 * bytes). Sets the descriptor's math type to the algorithm's. */
static nnm_status conv_algo(nnm_env *env, cuda_state *s, struct cuda_dnn_state *d,
                            cudnnHandle_t h, int32_t id, const cuda_dnn_conv_plan *p, int kind,
                            const char *op, cuda_dnn_algo *out, void **ws,
                            cuda_dnn_conv_key *keyp) {
    *ws = NULL;
    cuda_dnn_cache *cache = &d->devs[id].algos;
    cuda_dnn_conv_key_make(keyp, p, kind, d->allow_tf32);
    const cuda_dnn_conv_key key = *keyp;
    const cuda_dnn_algo *hit = cuda_dnn_cache_find(cache, &key);
    if (hit != NULL && hit->algo < 0) /* cuDNN refused this geometry before: decline at once */
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda %s: cuDNN refused this %s geometry", op,
                        conv_kind_name[kind]);
    if (hit != NULL &&
        d->fn.cudnnSetConvolutionMathType(d->cd, (cudnnMathType_t)hit->math_type) ==
            CUDNN_STATUS_SUCCESS &&
        cuda_scratch_get(NULL, s, id, hit->workspace, ws) == NNM_OK) {
        *out = *hit;
        return NNM_OK;
    }
    /* a miss, or the remembered algorithm's workspace cannot be had now: rank again */
    conv_cand c[CONV_MAX_CANDS];
    int n = 0;
    /* the ranking considers the math types the descriptor allows */
    cudnnStatus_t cs = d->fn.cudnnSetConvolutionMathType(d->cd, d->allow_tf32 ? CUDNN_DEFAULT_MATH
                                                                              : CUDNN_FMA_MATH);
    if (cs != CUDNN_STATUS_SUCCESS)
        return cuda_dnn_fail(env, d, op, "cudnnSetConvolutionMathType", cs);
    const cuda_dnn_algo refused = {-1, 0, 0}; /* remembered for geometries cuDNN refuses */
    cs = conv_rank(d, h, kind, c, &n);
    if (cs != CUDNN_STATUS_SUCCESS) {
        const nnm_status st = cuda_dnn_fail(env, d, op,
                             kind == CUDA_DNN_CONV_FWD        ? "cudnnGetConvolutionForwardAlgorithm_v7"
                             : kind == CUDA_DNN_CONV_BWD_DATA ? "cudnnGetConvolutionBackwardDataAlgorithm_v7"
                                                              : "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
                             cs);
        if (st == NNM_E_UNSUPPORTED)
            (void)cuda_dnn_cache_put(cache, &key, &refused);
        return st;
    }
    int too_big = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].status != CUDNN_STATUS_SUCCESS)
            continue;
        /* strict f32: FMA math (what the ranking returns when asked for it;
         * a DEFAULT one is run as FMA), never a tensor-op algorithm */
        int math = c[i].math_type;
        if (!d->allow_tf32) {
            if (math != CUDNN_FMA_MATH && math != CUDNN_DEFAULT_MATH)
                continue;
            math = CUDNN_FMA_MATH;
        }
        if (c[i].memory > CUDA_DNN_MAX_WORKSPACE)
            continue;
        if (d->fn.cudnnSetConvolutionMathType(d->cd, (cudnnMathType_t)math) !=
            CUDNN_STATUS_SUCCESS)
            continue;
        /* no env: a failed try leaves no message behind */
        if (cuda_scratch_get(NULL, s, id, c[i].memory, ws) != NNM_OK) {
            too_big = 1;
            continue;
        }
        const cuda_dnn_algo v = {c[i].algo, math, c[i].memory};
        *out = v;
        (void)cuda_dnn_cache_put(cache, &key, &v); /* NOMEM: just not remembered */
        return NNM_OK;
    }
    if (!too_big) /* none usable at all (not merely short of memory now) */
        (void)cuda_dnn_cache_put(cache, &key, &refused);
    return CUDA_ERR(env, NNM_E_UNSUPPORTED,
                    "cuda %s: no cuDNN %s algorithm for this geometry (%d ranked%s)", op,
                    conv_kind_name[kind], n, too_big ? ", workspaces did not fit" : "");
}

/* After a cuDNN call with the chosen algorithm failed: a geometry cuDNN
 * refuses (NNM_E_UNSUPPORTED) is remembered as such, so later calls decline
 * at once instead of failing the same way. */
static nnm_status conv_ran(struct cuda_dnn_state *d, int32_t id, const cuda_dnn_conv_key *key,
                           nnm_status st) {
    if (st == NNM_E_UNSUPPORTED) {
        const cuda_dnn_algo refused = {-1, 0, 0};
        (void)cuda_dnn_cache_put(&d->devs[id].algos, key, &refused);
    }
    return st;
}

/* Sets the context's descriptors x, y, w and conv from plan p (the math
 * type: conv_algo's). */
static nnm_status conv_describe(nnm_env *env, struct cuda_dnn_state *d, const cuda_dnn_conv_plan *p,
                                const char *op) {
    const char *call = "";
    const cudnnStatus_t cs = cuda_dnn_describe_conv(&d->fn, d->xd, d->yd, d->wd, d->cd, p, &call);
    return cs == CUDNN_STATUS_SUCCESS ? NNM_OK : cuda_dnn_fail(env, d, op, call, cs);
}

/* Plan, descriptor checks, device, cuDNN and descriptors: what both slots do first. */
static nnm_status conv_begin(nnm_env *env, cuda_state *s, const nnm_conv_args *a, int backward,
                             const char *op, cuda_dnn_conv_plan *p, int32_t *id,
                             struct cuda_dnn_state **d, cudnnHandle_t *h) {
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    char msg[512];
    nnm_status st = cuda_dnn_conv_plan_make(a, backward, p, msg, sizeof msg);
    if (st != NNM_OK)
        return CUDA_ERR(env, st, "cuda %s: %s", op, msg);
    *id = -1;
    const struct {
        const char *what;
        const nnm_tensor_desc *t;
    } ts[] = {
        {"x", a->x},
        {"w", a->w},
        {"y", backward ? NULL : a->y},
        {"b", backward ? NULL : a->b},
        {"grad_out", backward ? a->grad_out : NULL},
        {"grad_x", backward ? a->grad_x : NULL},
        {"grad_w", backward ? a->grad_w : NULL},
    };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (ts[i].t != NULL && (st = cuda_dnn_check(env, s, op, ts[i].what, ts[i].t, id, NULL)) != NNM_OK)
            return st;
    if ((st = cuda_use(env, op, *id)) != NNM_OK || (st = cuda_dnn_get(env, s, op, *id, d, h)) != NNM_OK)
        return st;
    return conv_describe(env, *d, p, op);
}

nnm_status cuda_dnn_conv(nnm_env *env, void *state, const nnm_conv_args *a) {
    cuda_state *s = state;
    const char *op = "conv";
    cuda_dnn_conv_plan p;
    int32_t id = -1;
    struct cuda_dnn_state *d = NULL;
    cudnnHandle_t h = NULL;
    nnm_status st = conv_begin(env, s, a, 0, op, &p, &id, &d, &h);
    if (st != NNM_OK)
        return st;
    cuda_dnn_algo al;
    cuda_dnn_conv_key key;
    void *ws = NULL;
    if ((st = conv_algo(env, s, d, h, id, &p, CUDA_DNN_CONV_FWD, op, &al, &ws, &key)) != NNM_OK)
        return st;
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t cs = d->fn.cudnnConvolutionForward(
        h, &one, d->xd, cuda_base(a->x), d->wd, cuda_base(a->w), d->cd,
        (cudnnConvolutionFwdAlgo_t)al.algo, ws, al.workspace, &zero, d->yd, cuda_base(a->y));
    cuda_scratch_put(s, id, ws); /* after the work is queued: stream order keeps it alive */
    if (cs != CUDNN_STATUS_SUCCESS)
        return conv_ran(d, id, &key, cuda_dnn_fail(env, d, op, "cudnnConvolutionForward", cs));
    if (a->b != NULL) {
        /* y += b, broadcast from [1, C_out, 1, ...] */
        if ((cs = cuda_dnn_set_tensor(&d->fn, d->bd, &p.bias)) != CUDNN_STATUS_SUCCESS)
            return cuda_dnn_fail(env, d, op, "cudnnSetTensorNdDescriptor (b)", cs);
        cs = d->fn.cudnnAddTensor(h, &one, d->bd, cuda_base(a->b), &one, d->yd, cuda_base(a->y));
        if (cs != CUDNN_STATUS_SUCCESS)
            return cuda_dnn_fail(env, d, op, "cudnnAddTensor", cs);
    }
    return NNM_OK;
}

nnm_status cuda_dnn_conv_backward(nnm_env *env, void *state, const nnm_conv_args *a) {
    cuda_state *s = state;
    const char *op = "conv_backward";
    cuda_dnn_conv_plan p;
    int32_t id = -1;
    struct cuda_dnn_state *d = NULL;
    cudnnHandle_t h = NULL;
    nnm_status st = conv_begin(env, s, a, 1, op, &p, &id, &d, &h);
    if (st != NNM_OK)
        return st;
    const float one = 1.0f, zero = 0.0f;
    cuda_dnn_algo al;
    cuda_dnn_conv_key key;
    void *ws = NULL;
    if (a->grad_x != NULL) {
        if ((st = conv_algo(env, s, d, h, id, &p, CUDA_DNN_CONV_BWD_DATA, op, &al, &ws, &key)) !=
            NNM_OK)
            return st;
        cudnnStatus_t cs = d->fn.cudnnConvolutionBackwardData(
            h, &one, d->wd, cuda_base(a->w), d->yd, cuda_base(a->grad_out), d->cd,
            (cudnnConvolutionBwdDataAlgo_t)al.algo, ws, al.workspace, &zero, d->xd,
            cuda_base(a->grad_x));
        cuda_scratch_put(s, id, ws);
        if (cs != CUDNN_STATUS_SUCCESS)
            return conv_ran(d, id, &key,
                            cuda_dnn_fail(env, d, op, "cudnnConvolutionBackwardData", cs));
    }
    if (a->grad_w != NULL) {
        if ((st = conv_algo(env, s, d, h, id, &p, CUDA_DNN_CONV_BWD_FILTER, op, &al, &ws, &key)) !=
            NNM_OK)
            return st;
        cudnnStatus_t cs = d->fn.cudnnConvolutionBackwardFilter(
            h, &one, d->xd, cuda_base(a->x), d->yd, cuda_base(a->grad_out), d->cd,
            (cudnnConvolutionBwdFilterAlgo_t)al.algo, ws, al.workspace, &zero, d->wd,
            cuda_base(a->grad_w));
        cuda_scratch_put(s, id, ws);
        if (cs != CUDNN_STATUS_SUCCESS)
            return conv_ran(d, id, &key,
                            cuda_dnn_fail(env, d, op, "cudnnConvolutionBackwardFilter", cs));
    }
    return NNM_OK;
}
