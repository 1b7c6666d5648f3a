/* plugins/transformer/transformer.c - torch.nn's transformer layers (1.13):
 * "transformer_encoder_layer", "transformer_decoder_layer",
 * "transformer_encoder", "transformer_decoder" and "transformer".
 *
 * Each is a composite: its create makes PyTorch's submodules itself through
 * host->child_new (ABI 1.5), under PyTorch's names, from the existing
 * plugins, and its forward calls them through the central call path
 * (descendant_call: their hooks fire, the profiler sees them, autograd
 * records their host ops). So state_dict names, printing, train/eval and
 * device moves are PyTorch's, and a manifest lists no children for them
 * (their config implies them; NNM_LAYER_OWNS_CHILDREN).
 *
 *   transformer_encoder_layer  self_attn (multihead_attention, with its
 *                              out_proj), linear1, dropout, linear2, norm1,
 *                              norm2, dropout1, dropout2
 *   transformer_decoder_layer  self_attn, multihead_attn, linear1, dropout,
 *                              linear2, norm1, norm2, norm3, dropout1,
 *                              dropout2, dropout3
 *   transformer_encoder        layers (module_list of num_layers encoder
 *                              layers: layers.0, ...), norm (layer_norm,
 *                              only with norm = true)
 *   transformer_decoder        layers, norm (the same, decoder layers)
 *   transformer                encoder (transformer_encoder with norm),
 *                              decoder (transformer_decoder with norm)
 *
 * Config (PyTorch's constructor names and defaults):
 *   d_model          int, required (transformer: 512)
 *   nhead            int, required (transformer: 8); divides d_model
 *   dim_feedforward  int, 2048
 *   dropout          float, 0.1, in [0, 1)
 *   activation       "relu" (default) or "gelu" (erf), applied with host ops
 *                    as PyTorch's F.relu / F.gelu (not a child)
 *   layer_norm_eps   float, 1e-5
 *   batch_first      bool, false: [N, S, E] instead of [S, N, E]
 *   norm_first       bool, false: pre-norm (norm before attention and ff)
 *   num_layers       stacks only, required
 *   norm             stacks only, bool, false: a final LayerNorm(d_model)
 *                    named "norm" (PyTorch's norm= argument)
 *   num_encoder_layers, num_decoder_layers   transformer only, 6 each
 *   is_causal        encoder layer / encoder: nnmod's (PyTorch 2's forward
 *                    hint): self-attention masked as triu(ones(S, S), 1)
 *   tgt_is_causal, memory_is_causal   decoder layer / decoder / transformer
 *                    (src_is_causal too): the same for the decoder's self-
 *                    attention and its attention over the memory
 *
 * Inputs (positional, PyTorch's forward order; an input with 0 elements is
 * absent, PyTorch's None; masks as multihead_attention takes them: bool or
 * u8 (true: masked) or f32 (added)):
 *   encoder layer, encoder:  src, [src_mask, [src_key_padding_mask]]
 *   decoder layer, decoder:  tgt, memory, [tgt_mask, [memory_mask,
 *                            [tgt_key_padding_mask, [memory_key_padding_mask]]]]
 *   transformer:             src, tgt, [src_mask, [tgt_mask, [memory_mask,
 *                            [src_key_padding_mask, [tgt_key_padding_mask,
 *                            [memory_key_padding_mask]]]]]]
 * One output, the input's shape (transformer: tgt's).
 *
 * The maths is 1.13's "slow path" (the one autograd records). PyTorch 1.13
 * takes a fused fast path in eval mode under no_grad with batch_first; its
 * values agree to rounding, except that nn.TransformerEncoder there returns
 * 0 at padded positions (nested tensors) where this returns the computed
 * values, as PyTorch's own slow path does. Parameters start as each child
 * layer initialises its own (PyTorch's layers do the same; nn.Transformer's
 * extra xavier_uniform_ pass over every matrix is not repeated: load its
 * state dict for its values).
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum { K_ENC_LAYER, K_DEC_LAYER, K_ENCODER, K_DECODER, K_TRANSFORMER };

static const char *const kind_type[] = {"transformer_encoder_layer", "transformer_decoder_layer",
                                        "transformer_encoder", "transformer_decoder", "transformer"};

#define TF_MAX_DIM ((int64_t)1 << 20)
#define TF_MAX_LAYERS 1024

typedef struct tf_state {
    int kind;
    int64_t d_model, nhead, dim_ff, num_layers, num_enc, num_dec;
    double dropout, eps;
    int gelu, batch_first, norm_first, norm;
    int is_causal, tgt_is_causal, memory_is_causal;
} tf_state;

/* ---- create --------------------------------------------------------------- */

/* Appends printf text to a JSON buffer; -1 when it does not fit. */
typedef struct jbuf {
    char b[1024];
    size_t n;
} jbuf;

static int jput(jbuf *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jput(jbuf *j, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(j->b + j->n, sizeof j->b - j->n, fmt, ap);
    va_end(ap);
    if (w < 0 || (size_t)w >= sizeof j->b - j->n)
        return -1;
    j->n += (size_t)w;
    return 0;
}

static const char *jfloat(char *buf, size_t cap, double v) {
    nnm_lu_pyfloat(buf, cap, v); /* shortest text that reads back to v; finite here */
    return buf;
}

static const char *jbool(int v) {
    return v ? "true" : "false";
}

static nnm_status make(nnm_env *env, const char *name, const char *type, const char *range,
                       const char *json) {
    return env->host->child_new(env, name, type, range, json);
}

/* The children of one encoder (dec = 0) or decoder (dec = 1) layer. */
static nnm_status make_layer_children(nnm_env *env, const tf_state *s, int dec) {
    char f1[40], f2[40];
    jbuf j = {{0}, 0};
    nnm_status st;
    const char *attn[2] = {"self_attn", "multihead_attn"};
    const int causal[2] = {dec ? s->tgt_is_causal : s->is_causal, s->memory_is_causal};
    for (int a = 0; a < 1 + dec; a++) {
        j.n = 0;
        if (jput(&j, "{\"embed_dim\": %lld, \"num_heads\": %lld, \"dropout\": %s, "
                     "\"batch_first\": %s, \"is_causal\": %s}",
                 (long long)s->d_model, (long long)s->nhead, jfloat(f1, sizeof f1, s->dropout),
                 jbool(s->batch_first), jbool(causal[a])) < 0)
            return env->host->set_error(env, NNM_E_LIMIT, "config text too long");
        char path[64];
        snprintf(path, sizeof path, "%s.out_proj", attn[a]);
        char lin[128];
        snprintf(lin, sizeof lin, "{\"in_features\": %lld, \"out_features\": %lld}",
                 (long long)s->d_model, (long long)s->d_model);
        if ((st = make(env, attn[a], "multihead_attention", "^1.1", j.b)) != NNM_OK ||
            (st = make(env, path, "non_dynamically_quantizable_linear", "^1.0", lin)) != NNM_OK)
            return st;
    }
    char l1[128], l2[128], dp[64], ln[128];
    snprintf(l1, sizeof l1, "{\"in_features\": %lld, \"out_features\": %lld}",
             (long long)s->d_model, (long long)s->dim_ff);
    snprintf(l2, sizeof l2, "{\"in_features\": %lld, \"out_features\": %lld}",
             (long long)s->dim_ff, (long long)s->d_model);
    snprintf(dp, sizeof dp, "{\"p\": %s}", jfloat(f1, sizeof f1, s->dropout));
    snprintf(ln, sizeof ln, "{\"normalized_shape\": %lld, \"eps\": %s}", (long long)s->d_model,
             jfloat(f2, sizeof f2, s->eps));
    /* PyTorch's __init__ order: linear1, dropout, linear2, norm1.., dropout1.. */
    if ((st = make(env, "linear1", "linear", "^1.0", l1)) != NNM_OK ||
        (st = make(env, "dropout", "dropout", "^1.0", dp)) != NNM_OK ||
        (st = make(env, "linear2", "linear", "^1.0", l2)) != NNM_OK)
        return st;
    const int n = dec ? 3 : 2;
    char name[16];
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "norm%d", i);
        if ((st = make(env, name, "layer_norm", "^1.0", ln)) != NNM_OK)
            return st;
    }
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "dropout%d", i);
        if ((st = make(env, name, "dropout", "^1.0", dp)) != NNM_OK)
            return st;
    }
    return NNM_OK;
}

/* The layer config a stack passes to each of its layers. */
static int layer_json(jbuf *j, const tf_state *s, int dec) {
    char f1[40], f2[40];
    if (jput(j, "{\"d_model\": %lld, \"nhead\": %lld, \"dim_feedforward\": %lld, \"dropout\": %s, "
                "\"activation\": \"%s\", \"layer_norm_eps\": %s, \"batch_first\": %s, "
                "\"norm_first\": %s",
             (long long)s->d_model, (long long)s->nhead, (long long)s->dim_ff,
             jfloat(f1, sizeof f1, s->dropout), s->gelu ? "gelu" : "relu",
             jfloat(f2, sizeof f2, s->eps), jbool(s->batch_first), jbool(s->norm_first)) < 0)
        return -1;
    if (!dec)
        return jput(j, ", \"is_causal\": %s}", jbool(s->is_causal));
    return jput(j, ", \"tgt_is_causal\": %s, \"memory_is_causal\": %s}", jbool(s->tgt_is_causal),
                jbool(s->memory_is_causal));
}

static nnm_status make_stack_children(nnm_env *env, const tf_state *s, int dec) {
    const nnm_host *h = env->host;
    jbuf j = {{0}, 0};
    if (layer_json(&j, s, dec) < 0)
        return h->set_error(env, NNM_E_LIMIT, "config text too long");
    nnm_status st = make(env, "layers", "module_list", "^1.0", NULL);
    char name[32];
    for (int64_t i = 0; st == NNM_OK && i < s->num_layers; i++) {
        snprintf(name, sizeof name, "layers.%lld", (long long)i);
        st = make(env, name, dec ? "transformer_decoder_layer" : "transformer_encoder_layer",
                  "^1.0", j.b);
    }
    if (st == NNM_OK && s->norm) {
        char ln[128], f[40];
        snprintf(ln, sizeof ln, "{\"normalized_shape\": %lld, \"eps\": %s}", (long long)s->d_model,
                 jfloat(f, sizeof f, s->eps));
        st = make(env, "norm", "layer_norm", "^1.0", ln);
    }
    return st;
}

static nnm_status make_transformer_children(nnm_env *env, const tf_state *s) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    for (int dec = 0; dec < 2 && st == NNM_OK; dec++) {
        jbuf j = {{0}, 0};
        if (layer_json(&j, s, dec) < 0)
            return h->set_error(env, NNM_E_LIMIT, "config text too long");
        j.n--; /* reopen the object */
        if (jput(&j, ", \"num_layers\": %lld, \"norm\": true}",
                 (long long)(dec ? s->num_dec : s->num_enc)) < 0)
            return h->set_error(env, NNM_E_LIMIT, "config text too long");
        st = make(env, dec ? "decoder" : "encoder", dec ? "transformer_decoder" : "transformer_encoder",
                  "^1.0", j.b);
    }
    return st;
}

static nnm_status tf_create(nnm_env *env, int kind, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, child_new) || !NNM_HOST_HAS(h, descendant_call))
        return h->set_error(env, NNM_E_VERSION,
                            "%s makes its submodules through the host slot child_new (ABI 1.5); "
                            "this host is ABI %u.%u",
                            kind_type[kind], (unsigned)h->abi_major, (unsigned)h->abi_minor);
    tf_state s = {0};
    s.kind = kind;
    const int64_t d512 = 512, d8 = 8, d2048 = 2048, d6 = 6;
    const double p01 = 0.1, e5 = 1e-5;
    const int no = 0;
    const int tr = kind == K_TRANSFORMER;
    nnm_status st = h->config_int(env, "d_model", tr ? &d512 : NULL, &s.d_model);
    if (st == NNM_OK)
        st = h->config_int(env, "nhead", tr ? &d8 : NULL, &s.nhead);
    if (st == NNM_OK)
        st = h->config_int(env, "dim_feedforward", &d2048, &s.dim_ff);
    if (st == NNM_OK)
        st = h->config_float(env, "dropout", &p01, &s.dropout);
    const char *act = NULL;
    if (st == NNM_OK)
        st = h->config_str(env, "activation", "relu", &act);
    if (st == NNM_OK)
        st = h->config_float(env, "layer_norm_eps", &e5, &s.eps);
    if (st == NNM_OK)
        st = h->config_bool(env, "batch_first", &no, &s.batch_first);
    if (st == NNM_OK)
        st = h->config_bool(env, "norm_first", &no, &s.norm_first);
    if (st == NNM_OK && (kind == K_ENCODER || kind == K_DECODER)) {
        st = h->config_int(env, "num_layers", NULL, &s.num_layers);
        if (st == NNM_OK)
            st = h->config_bool(env, "norm", &no, &s.norm);
    }
    if (st == NNM_OK && tr) {
        st = h->config_int(env, "num_encoder_layers", &d6, &s.num_enc);
        if (st == NNM_OK)
            st = h->config_int(env, "num_decoder_layers", &d6, &s.num_dec);
    }
    if (st == NNM_OK && (kind == K_ENC_LAYER || kind == K_ENCODER || tr))
        st = h->config_bool(env, tr ? "src_is_causal" : "is_causal", &no, &s.is_causal);
    if (st == NNM_OK && (kind == K_DEC_LAYER || kind == K_DECODER || tr)) {
        st = h->config_bool(env, "tgt_is_causal", &no, &s.tgt_is_causal);
        if (st == NNM_OK)
            st = h->config_bool(env, "memory_is_causal", &no, &s.memory_is_causal);
    }
    if (st != NNM_OK)
        return st;
    if (strcmp(act, "relu") == 0)
        s.gelu = 0;
    else if (strcmp(act, "gelu") == 0)
        s.gelu = 1;
    else
        return h->set_error(env, NNM_E_INVALID, "activation should be relu/gelu, not %.40s", act);
    if (s.d_model <= 0 || s.d_model > TF_MAX_DIM || s.dim_ff <= 0 || s.dim_ff > TF_MAX_DIM)
        return h->set_error(env, NNM_E_INVALID,
                            "d_model and dim_feedforward must be in [1, %lld], got %lld and %lld",
                            (long long)TF_MAX_DIM, (long long)s.d_model, (long long)s.dim_ff);
    if (s.nhead <= 0 || s.d_model % s.nhead != 0)
        return h->set_error(env, NNM_E_INVALID,
                            "d_model must be divisible by nhead (d_model %lld, nhead %lld)",
                            (long long)s.d_model, (long long)s.nhead);
    if (!(s.dropout >= 0.0 && s.dropout < 1.0))
        return h->set_error(env, NNM_E_INVALID, "dropout must be in [0, 1), got %g", s.dropout);
    if (!(s.eps > 0.0 && s.eps < 1e300))
        return h->set_error(env, NNM_E_INVALID, "layer_norm_eps must be a positive finite float, got %g",
                            s.eps);
    const int64_t counts[3] = {s.num_layers, s.num_enc, s.num_dec};
    for (int i = 0; i < 3; i++)
        if (counts[i] < 0 || counts[i] > TF_MAX_LAYERS ||
            (i == 0 && (kind == K_ENCODER || kind == K_DECODER) && counts[i] < 1))
            return h->set_error(env, NNM_E_INVALID, "%s must be in [%d, %d], got %lld",
                                i == 0 ? "num_layers" : i == 1 ? "num_encoder_layers" : "num_decoder_layers",
                                i == 0 ? 1 : 0, TF_MAX_LAYERS, (long long)counts[i]);
    switch (kind) {
    case K_ENC_LAYER: st = make_layer_children(env, &s, 0); break;
    case K_DEC_LAYER: st = make_layer_children(env, &s, 1); break;
    case K_ENCODER: st = make_stack_children(env, &s, 0); break;
    case K_DECODER: st = make_stack_children(env, &s, 1); break;
    default: st = make_transformer_children(env, &s); break;
    }
    if (st != NNM_OK)
        return st;
    tf_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the %s state", kind_type[kind]);
    *p = s;
    *self = p;
    return NNM_OK;
}

#define TF_CREATE(fn, kind)                                                                  \
    static nnm_status fn(nnm_env *env, void **self) {                                        \
        return tf_create(env, kind, self);                                                   \
    }
TF_CREATE(enc_layer_create, K_ENC_LAYER)
TF_CREATE(dec_layer_create, K_DEC_LAYER)
TF_CREATE(encoder_create, K_ENCODER)
TF_CREATE(decoder_create, K_DECODER)
TF_CREATE(transformer_create, K_TRANSFORMER)

static void tf_destroy(void *self) {
    free(self);
}

/* ---- forward -------------------------------------------------------------- */

/* Temporaries of one forward, released together. */
#define TF_TMP_MAX 48
typedef struct tf_tmp {
    nnm_tensor *t[TF_TMP_MAX];
    int n;
} tf_tmp;

static void tmp_release(const nnm_host *h, tf_tmp *a) {
    for (int i = 0; i < a->n; i++)
        h->tensor_release(a->t[i]);
    a->n = 0;
}

/* Keeps t (a new reference) in the arena; returns it, or NULL when full
 * (then t is released and a message set). */
static nnm_tensor *keep(nnm_env *env, tf_tmp *a, nnm_tensor *t) {
    if (a->n == TF_TMP_MAX) {
        env->host->tensor_release(t);
        env->host->set_error(env, NNM_E_LIMIT, "transformer: too many temporaries (a bug)");
        return NULL;
    }
    a->t[a->n++] = t;
    return t;
}

/* *out = module `path` (x, ...), kept in the arena. */
static nnm_status call(nnm_env *env, tf_tmp *a, const char *path, nnm_tensor *const *in, uint32_t n,
                       nnm_tensor **out) {
    nnm_tensor *y = NULL;
    nnm_status st = env->host->descendant_call(env, path, in, n, &y, 1);
    if (st != NNM_OK)
        return st;
    *out = keep(env, a, y);
    return *out ? NNM_OK : NNM_E_LIMIT;
}

static nnm_status call1(nnm_env *env, tf_tmp *a, const char *path, nnm_tensor *x, nnm_tensor **out) {
    return call(env, a, path, &x, 1, out);
}

static nnm_status add(nnm_env *env, tf_tmp *a, nnm_tensor *x, nnm_tensor *y, nnm_tensor **out) {
    nnm_tensor *z = NULL;
    nnm_status st = env->host->op_binary(env, NNM_BINARY_ADD, x, y, &z);
    if (st != NNM_OK)
        return st;
    *out = keep(env, a, z);
    return *out ? NNM_OK : NNM_E_LIMIT;
}

static nnm_status unary(nnm_env *env, tf_tmp *a, int32_t op, nnm_tensor *x, double alpha,
                        nnm_tensor **out) {
    nnm_tensor *z = NULL;
    nnm_status st = env->host->op_unary(env, op, x, alpha, &z);
    if (st != NNM_OK)
        return st;
    *out = keep(env, a, z);
    return *out ? NNM_OK : NNM_E_LIMIT;
}

/* F.relu or F.gelu (erf): 0.5 * x * (1 + erf(x / sqrt(2))). */
static nnm_status activation(nnm_env *env, const tf_state *s, tf_tmp *a, nnm_tensor *x,
                             nnm_tensor **out) {
    if (!s->gelu)
        return unary(env, a, NNM_UNARY_RELU, x, 0.0, out);
    /* one kernel (ABI 1.5's GELU unary op, its gradient one more) where the
     * host and the backend have it; else composed from erf */
    nnm_status st;
    if (env->host->abi_minor >= 5 && (st = unary(env, a, NNM_UNARY_GELU, x, 0.0, out)) != NNM_E_UNSUPPORTED)
        return st;
    nnm_tensor *t1, *t2, *t3, *t4 = NULL;
    if ((st = unary(env, a, NNM_UNARY_SCALE, x, 0.70710678118654752440, &t1)) != NNM_OK ||
        (st = unary(env, a, NNM_UNARY_ERF, t1, 0.0, &t2)) != NNM_OK ||
        (st = unary(env, a, NNM_UNARY_ADD_SCALAR, t2, 1.0, &t3)) != NNM_OK)
        return st;
    if ((st = env->host->op_binary(env, NNM_BINARY_MUL, x, t3, &t4)) != NNM_OK)
        return st;
    if (keep(env, a, t4) == NULL)
        return NNM_E_LIMIT;
    return unary(env, a, NNM_UNARY_SCALE, t4, 0.5, out);
}

static int present(const nnm_host *h, nnm_tensor *const *in, uint32_t n_in, uint32_t i) {
    return i < n_in && in[i] != NULL && nnm_lu_numel(h->tensor_desc(in[i])) > 0;
}

/* attention `path`(q, kv, kv, kpm, am) then dropout `drop`. A NULL mask is
 * absent; `empty` stands in for an absent key padding mask before an
 * attn_mask. */
static nnm_status attn_block(nnm_env *env, tf_tmp *a, const char *path, const char *drop,
                             nnm_tensor *q, nnm_tensor *kv, nnm_tensor *am, nnm_tensor *kpm,
                             nnm_tensor *empty, nnm_tensor **out) {
    nnm_tensor *in[5] = {q, kv, kv, kpm ? kpm : empty, am};
    const uint32_t n = am ? 5 : kpm ? 4 : 3;
    nnm_tensor *y;
    nnm_status st = call(env, a, path, in, n, &y);
    if (st != NNM_OK)
        return st;
    return call1(env, a, drop, y, out);
}

/* linear2(dropout(activation(linear1(x)))) then dropout `drop`. */
static nnm_status ff_block(nnm_env *env, const tf_state *s, tf_tmp *a, const char *drop,
                           nnm_tensor *x, nnm_tensor **out) {
    nnm_tensor *h1, *h2, *h3, *h4;
    nnm_status st;
    if ((st = call1(env, a, "linear1", x, &h1)) != NNM_OK ||
        (st = activation(env, s, a, h1, &h2)) != NNM_OK ||
        (st = call1(env, a, "dropout", h2, &h3)) != NNM_OK ||
        (st = call1(env, a, "linear2", h3, &h4)) != NNM_OK)
        return st;
    return call1(env, a, drop, h4, out);
}

/* Checks that x is [S, N, E] / [N, S, E] / [S, E] with E = d_model. */
static nnm_status check_seq(nnm_env *env, const tf_state *s, nnm_tensor *x, const char *what) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    char got[96];
    if (!nnm_lu_is_f32(d) || (d->ndim != 2 && d->ndim != 3) || d->shape[d->ndim - 1] != s->d_model)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s must be f32 %s (or [S, E] unbatched) with E = d_model = %lld; got %s",
                            what, s->batch_first ? "[N, S, E]" : "[S, N, E]", (long long)s->d_model,
                            nnm_lu_shape_str(d, got, sizeof got));
    return NNM_OK;
}

/* One residual sub-block, post-norm: norm(x + f(x)); pre-norm: x + f(norm(x)).
 * `which` 0: self-attention, 1: attention over memory, 2: feed-forward. */
static nnm_status sublayer(nnm_env *env, const tf_state *s, tf_tmp *a, int which, const char *norm,
                           const char *drop, nnm_tensor *x, nnm_tensor *mem, nnm_tensor *am,
                           nnm_tensor *kpm, nnm_tensor *empty, nnm_tensor **out) {
    nnm_tensor *in = x, *f, *r;
    nnm_status st;
    if (s->norm_first && (st = call1(env, a, norm, x, &in)) != NNM_OK)
        return st;
    if (which == 2)
        st = ff_block(env, s, a, drop, in, &f);
    else
        st = attn_block(env, a, which ? "multihead_attn" : "self_attn", drop, in,
                        which ? mem : in, am, kpm, empty, &f);
    if (st != NNM_OK || (st = add(env, a, x, f, &r)) != NNM_OK)
        return st;
    if (s->norm_first) {
        *out = r;
        return NNM_OK;
    }
    return call1(env, a, norm, r, out);
}

static nnm_status empty_tensor(nnm_env *env, tf_tmp *a, nnm_tensor **out) {
    const int64_t zero[1] = {0};
    nnm_tensor *t = NULL;
    nnm_status st = env->host->tensor_new(env, 1, zero, NNM_F32, &t);
    if (st != NNM_OK)
        return st;
    *out = keep(env, a, t);
    return *out ? NNM_OK : NNM_E_LIMIT;
}

/* The result r (in the arena) handed to the caller as out[0]. */
static nnm_status hand_out(const nnm_host *h, nnm_tensor *r, nnm_tensor **out) {
    h->tensor_retain(r);
    out[0] = r;
    return NNM_OK;
}

static nnm_status check_io(nnm_env *env, const tf_state *s, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out, uint32_t min_in, uint32_t max_in,
                           const char *usage) {
    const nnm_host *h = env->host;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "%s: forward without state", usage);
    if (in == NULL || out == NULL || n_in < min_in || n_in > max_in || n_out != 1)
        return h->set_error(env, NNM_E_SHAPE, "%s; got %u inputs and %u outputs", usage,
                            (unsigned)n_in, (unsigned)n_out);
    for (uint32_t i = 0; i < min_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "input %u is NULL", (unsigned)i);
    return NNM_OK;
}

#define MASK(i) (present(h, in, n_in, (i)) ? in[(i)] : NULL)

static nnm_status enc_layer_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                    nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const tf_state *s = self;
    nnm_status st = check_io(env, s, in, n_in, out, n_out, 1, 3,
                             "transformer_encoder_layer takes src[, src_mask[, src_key_padding_mask]] "
                             "and returns one output");
    if (st != NNM_OK || (st = check_seq(env, s, in[0], "src")) != NNM_OK)
        return st;
    tf_tmp a = {{0}, 0};
    nnm_tensor *am = MASK(1), *kpm = MASK(2), *empty = NULL, *x1, *x2;
    if ((am && !kpm && (st = empty_tensor(env, &a, &empty)) != NNM_OK) ||
        (st = sublayer(env, s, &a, 0, "norm1", "dropout1", in[0], NULL, am, kpm, empty, &x1)) != NNM_OK ||
        (st = sublayer(env, s, &a, 2, "norm2", "dropout2", x1, NULL, NULL, NULL, NULL, &x2)) != NNM_OK)
        goto done;
    st = hand_out(h, x2, out);
done:
    tmp_release(h, &a);
    return st;
}

/* The decoder layer's maths on tgt, memory and the four masks (NULL: absent). */
static nnm_status dec_layer(nnm_env *env, const tf_state *s, tf_tmp *a, nnm_tensor *tgt,
                            nnm_tensor *mem, nnm_tensor *const masks[4], nnm_tensor **out) {
    nnm_tensor *empty = NULL, *x1, *x2;
    nnm_status st;
    if (((masks[0] && !masks[2]) || (masks[1] && !masks[3])) &&
        (st = empty_tensor(env, a, &empty)) != NNM_OK)
        return st;
    if ((st = sublayer(env, s, a, 0, "norm1", "dropout1", tgt, NULL, masks[0], masks[2], empty, &x1)) != NNM_OK ||
        (st = sublayer(env, s, a, 1, "norm2", "dropout2", x1, mem, masks[1], masks[3], empty, &x2)) != NNM_OK)
        return st;
    return sublayer(env, s, a, 2, "norm3", "dropout3", x2, NULL, NULL, NULL, NULL, out);
}

static nnm_status dec_layer_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                    nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const tf_state *s = self;
    nnm_status st = check_io(env, s, in, n_in, out, n_out, 2, 6,
                             "transformer_decoder_layer takes tgt, memory[, tgt_mask[, memory_mask[, "
                             "tgt_key_padding_mask[, memory_key_padding_mask]]]] and returns one output");
    if (st != NNM_OK || (st = check_seq(env, s, in[0], "tgt")) != NNM_OK ||
        (st = check_seq(env, s, in[1], "memory")) != NNM_OK)
        return st;
    tf_tmp a = {{0}, 0};
    nnm_tensor *const masks[4] = {MASK(2), MASK(3), MASK(4), MASK(5)};
    nnm_tensor *y;
    if ((st = dec_layer(env, s, &a, in[0], in[1], masks, &y)) == NNM_OK)
        st = hand_out(h, y, out);
    tmp_release(h, &a);
    return st;
}

/* A stack: x through layers.0 .. layers.N-1 (each with `extra` inputs after
 * x), then norm when it has one. */
static nnm_status stack(nnm_env *env, const tf_state *s, tf_tmp *a, const char *prefix,
                        nnm_tensor *x, nnm_tensor *const *extra, uint32_t n_extra, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_tensor *cur = x;
    nnm_tensor *in[NNM_MAX_IO];
    char path[96];
    for (uint32_t i = 0; i < n_extra; i++)
        in[1 + i] = extra[i];
    for (int64_t l = 0; l < s->num_layers; l++) {
        snprintf(path, sizeof path, "%slayers.%lld", prefix, (long long)l);
        nnm_tensor *y = NULL;
        in[0] = cur;
        nnm_status st = h->descendant_call(env, path, in, 1 + n_extra, &y, 1);
        if (st != NNM_OK) {
            if (cur != x)
                h->tensor_release(cur);
            return st;
        }
        /* one layer's output at a time: the previous one goes now (the
         * graph keeps what backward needs) */
        if (cur != x)
            h->tensor_release(cur);
        cur = y;
    }
    if (cur != x && keep(env, a, cur) == NULL)
        return NNM_E_LIMIT;
    if (s->norm) {
        snprintf(path, sizeof path, "%snorm", prefix);
        return call1(env, a, path, cur, out);
    }
    *out = cur;
    return NNM_OK;
}

/* transformer_encoder(src, ...) and transformer_decoder(tgt, memory, ...):
 * the stack over in[0], the other inputs handed to every layer. */
static nnm_status stack_forward(nnm_env *env, const tf_state *s, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out, uint32_t min_in, uint32_t max_in,
                                const char *usage, const char *const *seq_names) {
    const nnm_host *h = env->host;
    nnm_status st = check_io(env, s, in, n_in, out, n_out, min_in, max_in, usage);
    for (uint32_t i = 0; st == NNM_OK && i < min_in; i++)
        st = check_seq(env, s, in[i], seq_names[i]);
    if (st != NNM_OK)
        return st;
    tf_tmp a = {{0}, 0};
    nnm_tensor *y;
    if ((st = stack(env, s, &a, "", in[0], in + 1, n_in - 1, &y)) == NNM_OK)
        st = hand_out(h, y, out);
    tmp_release(h, &a);
    return st;
}

static nnm_status encoder_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                  nnm_tensor **out, uint32_t n_out) {
    static const char *const names[] = {"src"};
    return stack_forward(env, self, in, n_in, out, n_out, 1, 3,
                         "transformer_encoder takes src[, mask[, src_key_padding_mask]] and "
                         "returns one output", names);
}

static nnm_status decoder_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                  nnm_tensor **out, uint32_t n_out) {
    static const char *const names[] = {"tgt", "memory"};
    return stack_forward(env, self, in, n_in, out, n_out, 2, 6,
                         "transformer_decoder takes tgt, memory[, tgt_mask[, memory_mask[, "
                         "tgt_key_padding_mask[, memory_key_padding_mask]]]] and returns one output",
                         names);
}

static nnm_status transformer_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                      nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const tf_state *s = self;
    nnm_status st = check_io(env, s, in, n_in, out, n_out, 2, 8,
                             "transformer takes src, tgt[, src_mask[, tgt_mask[, memory_mask[, "
                             "src_key_padding_mask[, tgt_key_padding_mask[, memory_key_padding_mask]]]]]] "
                             "and returns one output");
    if (st != NNM_OK || (st = check_seq(env, s, in[0], "src")) != NNM_OK ||
        (st = check_seq(env, s, in[1], "tgt")) != NNM_OK)
        return st;
    const nnm_tensor_desc *ds = h->tensor_desc(in[0]), *dt = h->tensor_desc(in[1]);
    const int bdim = s->batch_first ? 0 : 1;
    if (ds->ndim != dt->ndim || (ds->ndim == 3 && ds->shape[bdim] != dt->shape[bdim]))
        return h->set_error(env, NNM_E_SHAPE, "the batch number of src and tgt must be equal");
    tf_tmp a = {{0}, 0};
    nnm_tensor *empty = NULL, *mem = NULL, *y = NULL;
    /* encoder(src, src_mask, src_key_padding_mask) */
    nnm_tensor *ein[3] = {in[0], MASK(2), MASK(5)};
    uint32_t en = ein[2] ? 3 : ein[1] ? 2 : 1;
    /* decoder(tgt, memory, tgt_mask, memory_mask, tgt_kpm, memory_kpm) */
    nnm_tensor *din[6] = {in[1], NULL, MASK(3), MASK(4), MASK(6), MASK(7)};
    uint32_t dn = 2;
    for (uint32_t i = 2; i < 6; i++)
        if (din[i] != NULL)
            dn = i + 1;
    if ((en == 3 && !ein[1]) || dn > 2) {
        if ((st = empty_tensor(env, &a, &empty)) != NNM_OK)
            goto done;
        if (!ein[1])
            ein[1] = empty;
        for (uint32_t i = 2; i < dn; i++)
            if (din[i] == NULL)
                din[i] = empty;
    }
    if ((st = call(env, &a, "encoder", ein, en, &mem)) != NNM_OK)
        goto done;
    din[1] = mem;
    if ((st = call(env, &a, "decoder", din, dn, &y)) != NNM_OK)
        goto done;
    st = hand_out(h, y, out);
done:
    tmp_release(h, &a);
    return st;
}

/* ---- vtables -------------------------------------------------------------- */

#define TF_LAYER_FIELDS(req)                                                                   \
    {"d_model", NNM_CONFIG_INT, req, "model width E"},                                         \
        {"nhead", NNM_CONFIG_INT, req, "attention heads; divides d_model"},                    \
        {"dim_feedforward", NNM_CONFIG_INT, 0, "width of the feed-forward block (2048)"},      \
        {"dropout", NNM_CONFIG_FLOAT, 0, "dropout probability in train mode (0.1)"},           \
        {"activation", NNM_CONFIG_STR, 0, "\"relu\" (default) or \"gelu\""},                   \
        {"layer_norm_eps", NNM_CONFIG_FLOAT, 0, "the layer norms' eps (1e-5)"},                \
        {"batch_first", NNM_CONFIG_BOOL, 0, "inputs [N, S, E] instead of [S, N, E] (false)"},  \
        {"norm_first", NNM_CONFIG_BOOL, 0, "layer norm before attention and feed-forward (false)"}

#define TF_ENC_CAUSAL {"is_causal", NNM_CONFIG_BOOL, 0, "self-attention masked causally (false)"}
#define TF_DEC_CAUSAL                                                                          \
    {"tgt_is_causal", NNM_CONFIG_BOOL, 0, "self-attention masked causally (false)"},           \
        {"memory_is_causal", NNM_CONFIG_BOOL, 0, "attention over memory masked causally (false)"}
#define TF_STACK                                                                               \
    {"num_layers", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "layers in the stack"},                \
        {"norm", NNM_CONFIG_BOOL, 0, "a final LayerNorm(d_model) named norm (false)"}

static const nnm_config_field enc_layer_config[] = {TF_LAYER_FIELDS(NNM_CONFIG_REQUIRED), TF_ENC_CAUSAL};
static const nnm_config_field dec_layer_config[] = {TF_LAYER_FIELDS(NNM_CONFIG_REQUIRED), TF_DEC_CAUSAL};
static const nnm_config_field encoder_config[] = {TF_LAYER_FIELDS(NNM_CONFIG_REQUIRED), TF_ENC_CAUSAL,
                                                  TF_STACK};
static const nnm_config_field decoder_config[] = {TF_LAYER_FIELDS(NNM_CONFIG_REQUIRED), TF_DEC_CAUSAL,
                                                  TF_STACK};
static const nnm_config_field transformer_config[] = {
    TF_LAYER_FIELDS(0),
    {"num_encoder_layers", NNM_CONFIG_INT, 0, "encoder layers (6)"},
    {"num_decoder_layers", NNM_CONFIG_INT, 0, "decoder layers (6)"},
    {"src_is_causal", NNM_CONFIG_BOOL, 0, "encoder self-attention masked causally (false)"},
    TF_DEC_CAUSAL,
};

#define N_OF(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

#define TF_VTABLE(var, lname, display, create_fn, forward_fn, fields)                         \
    static const nnm_layer_vtable var = {                                                     \
        .struct_size = sizeof(nnm_layer_vtable),                                              \
        .flags = NNM_LAYER_CONTAINER | NNM_LAYER_OWNS_CHILDREN,                               \
        .name = lname,                                                                        \
        .display_name = display,                                                              \
        .version_major = 1,                                                                   \
        .version_minor = 0,                                                                   \
        .version_patch = 0,                                                                   \
        .n_inputs = NNM_ARITY_ANY,                                                            \
        .n_outputs = 1,                                                                       \
        .create = create_fn,                                                                  \
        .destroy = tf_destroy,                                                                \
        .forward = forward_fn,                                                                \
        .config_fields = fields,                                                              \
        .n_config_fields = N_OF(fields),                                                      \
    }

TF_VTABLE(enc_layer_vt, "transformer_encoder_layer", "TransformerEncoderLayer", enc_layer_create,
          enc_layer_forward, enc_layer_config);
TF_VTABLE(dec_layer_vt, "transformer_decoder_layer", "TransformerDecoderLayer", dec_layer_create,
          dec_layer_forward, dec_layer_config);
TF_VTABLE(encoder_vt, "transformer_encoder", "TransformerEncoder", encoder_create, encoder_forward,
          encoder_config);
TF_VTABLE(decoder_vt, "transformer_decoder", "TransformerDecoder", decoder_create, decoder_forward,
          decoder_config);
TF_VTABLE(transformer_vt, "transformer", "Transformer", transformer_create, transformer_forward,
          transformer_config);

static const nnm_layer_vtable *const tf_layers[] = {&enc_layer_vt, &dec_layer_vt, &encoder_vt,
                                                    &decoder_vt, &transformer_vt};

static const nnm_plugin_desc tf_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "transformer",
    .description = "torch.nn transformer layers, composed of child modules (child_new)",
    .n_layers = N_OF(tf_layers),
    .n_backends = 0,
    .layers = tf_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(tf_plugin)
