/* runtime/autograd/autograd_internal.h - autograd: nodes of the backward graph, the engine, the recorded derivatives, grad hooks.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_AUTOGRAD_INTERNAL_H
#define NNM_AUTOGRAD_INTERNAL_H

#include "../core/core_internal.h"
#include "../core/ctx_internal.h"
#include "../module/hooks_internal.h"

/* autograd.c - nodes of the backward graph and the engine.
 *
 * A node is made by an op (or a custom-backward layer call) whose inputs need
 * grad. Its edges point upstream: to the node that made each input (fn, nr),
 * or to the input itself when it is a leaf that requires grad. Saved tensors
 * are aliases with no grad_fn, so no node ever references its own output. */
#define NNM__NODE_SAVED 6

typedef nnm_status (*nnm__backward_fn)(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *grad_out,
                                       nnm_tensor **grad_in);

typedef struct nnm__edge {
    nnm__node *fn;                /* owned; or NULL */
    uint32_t nr;                  /* which output of fn */
    nnm_tensor *leaf;             /* owned; a leaf that requires grad, or NULL */
} nnm__edge;

struct nnm__node {
    /* nnm__node_new zeroes every field up to `next`, and next/grad up to
     * n_in/n_out; the fields after `grad` are written before they are read
     * (hook_grad_out by whoever sets `module`). A node is some 1.2 KB: zeroing
     * it whole cost a tenth of a small model's forward. */
    uint32_t refs;
    uint16_t n_in, n_out;         /* edges; outputs (grads the node receives) */
    const char *name;             /* "LinearBackward" */
    nnm__backward_fn backward;
    nnm_ctx *ctx;
    nnm_tensor *saved[NNM__NODE_SAVED];
    uint32_t n_saved;
    int freed;                    /* saved state released after a backward */
    /* op metadata */
    int32_t op;
    uint32_t kind;                /* NNM__NODE_* */
    double alpha;
    int64_t ival;
    int32_t in_ndim[2];
    nnm_module *module;           /* owned: custom-backward and hook nodes */
    nnm__node *peer;              /* owned: the input-side node of a hook pair */
    /* engine scratch */
    uint32_t deps;
    uint32_t mark;
    nnm__node *next_free;
    /* custom-backward nodes with more than 2 inputs: input i's ndim and
     * shape at in_shapes[i * (NNM_MAX_DIMS + 1)] (malloc'd; up to 2 inputs
     * use in_ndim/in_shape) */
    int64_t *in_shapes;
    nnm__edge next[NNM__MAX_IO];  /* zeroed up to n_in */
    nnm_tensor *grad[NNM__MAX_IO]; /* engine scratch; zeroed up to n_out */
    nnm_tensor *hook_grad_out[NNM__MAX_IO]; /* hook pairs: grads of the outputs
                                   * (zeroed where `module` is set) */
    int64_t in_shape[2][NNM_MAX_DIMS];
    /* op metadata of the ABI 1.3 ops (ops_nn.c, ops_shape.c) */
    union {
        uint64_t hook_start[4];   /* backward-hook nodes: the seq of the lists
                                   * (global pre, module pre, global, module)
                                   * when the forward ran */
        nnm_conv_params conv;
        nnm_pool_params pool;
        int64_t sizes[NNM__MAX_IO]; /* concat: each input's size along dim; permute: perm */
    } u;
};

/* nnm__node.kind bits */
#define NNM__NODE_CUSTOM 1u       /* a custom-backward layer call: its module's
                                   * parameters take gradients through the host */
#define NNM__NODE_HOOKS_HELD 2u   /* a backward-hook node holding the hook lists it
                                   * captured at forward (call.c) */

void nnm__node_release(nnm__node *n); /* NULL: no-op */
/* True when an op on these inputs must be recorded (grad mode on and one of
 * them requires grad). NULL inputs are ignored. Inline: every op asks, and
 * under no_grad the answer is one thread-local load. */
static inline int nnm__needs_grad(const nnm_tensor *a, const nnm_tensor *b, const nnm_tensor *c) {
    if (!nnm__grad_enabled()) return 0;
    return (a && (a->flags & NNM__T_REQUIRES_GRAD)) || (b && (b->flags & NNM__T_REQUIRES_GRAD)) ||
           (c && (c->flags & NNM__T_REQUIRES_GRAD));
}
/* A node with edges to `inputs` (n_in of them, NULLs allowed); NULL on OOM. */
nnm__node *nnm__node_new(nnm_ctx *ctx, const char *name, nnm__backward_fn fn, nnm_tensor *const *inputs,
                         uint32_t n_in, uint32_t n_out);
/* Makes `out` output nr of node n (takes a reference on n). */
void nnm__node_attach(nnm__node *n, nnm_tensor *out, uint32_t nr);
/* Saves an alias of t (no grad_fn) in n; NNM_E_NOMEM on failure. */
nnm_status nnm__node_save(nnm__node *n, nnm_tensor *t);
/* Saves t itself (a reference), for a tensor that is an input of n's op
 * and never one of its outputs: its grad_fn, if any, is upstream of n, so no
 * cycle can form (PyTorch's SavedVariable keeps inputs the same way), and
 * no alias object is made. */
nnm_status nnm__node_save_input(nnm__node *n, nnm_tensor *t);
/* The same into saved[i] (i < n_saved, which the caller set; slots left
 * NULL are skipped when the node drops its saved tensors). */
nnm_status nnm__node_save_at(nnm__node *n, uint32_t i, nnm_tensor *t);
/* A tensor object sharing t's storage with its own shape/strides (strides
 * NULL: contiguous) and no autograd information. */
nnm_status nnm__tensor_view(nnm_tensor *t, int32_t ndim, const int64_t *shape,
                            const int64_t *strides, nnm_tensor **out);
/* A contiguous tensor of `shape` holding t broadcast to it. */
nnm_status nnm__expand(nnm_ctx *ctx, nnm_tensor *t, int32_t ndim, const int64_t *shape,
                       nnm_tensor **out);
/* Sums g over the dims it was broadcast along, giving a tensor of shape. */
nnm_status nnm__sum_to(nnm_ctx *ctx, nnm_tensor *g, int32_t ndim, const int64_t *shape,
                       nnm_tensor **out);
/* Adds grad into a leaf's .grad, copying rather than sharing memory. */
nnm_status nnm__leaf_accumulate(nnm_ctx *ctx, nnm_tensor *leaf, nnm_tensor *grad);
/* Adds grad into *slot (taking a reference, or replacing *slot with a sum). */
nnm_status nnm__grad_accumulate(nnm_ctx *ctx, nnm_tensor **slot, nnm_tensor *grad);

/* Early hand-over (the engine's side of a backward that wants the
 * parameters' hooks to run before it computes the rest: DDP starts a
 * bucket's all-reduce from them, which then overlaps that computation).
 * Both are only valid inside n's backward, called by the engine; outside it
 * they do nothing (emit returns NNM_OK, dest NULL) and gin[] goes the usual
 * way.
 *
 * nnm__node_emit: input i's gradient g (borrowed; the backward may keep it
 * in gin[i], which the engine then only releases) is accumulated now: into
 * a leaf's .grad, whose post-accumulate-grad hooks run if this was its last
 * edge, or into the upstream node's input.
 *
 * nnm__node_grad_dest: a contiguous f32 tensor of input i's shape that the
 * backward may write the gradient into itself, with no temporary: the leaf's
 * .grad to add into (*accumulate = 1), or its DDP bucket view to overwrite
 * (*accumulate = 0); NULL when input i is no leaf, has neither, or the
 * tensor shares storage with one of srcs[0..n_srcs) (the operands). Once
 * written, nnm__node_grad_dest_done(ctx, n, i, dest) makes it .grad and runs
 * the hooks as nnm__node_emit would. */
nnm_status nnm__node_emit(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *g);
nnm_tensor *nnm__node_grad_dest(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *const *srcs,
                                uint32_t n_srcs, int *accumulate);
nnm_status nnm__node_grad_dest_done(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *dest);

/* Weight gradients in row blocks. A linear layer computes the gradient of a
 * [rows, cols] weight in blocks of nnm__grad_block_rows(rows, cols) rows,
 * in order (0: whole, when that makes fewer than two blocks), DDP or not, so
 * a gradient is the same bits whether it is handed over in parts or not,
 * whatever the backend's gemm does with the size of a product. The rule
 * depends on the weight's shape alone (never on the batch): every rank of a
 * DDP job cuts the same blocks, and DDP lays out its pieces by it.
 *
 * nnm__node_grad_dest_parts: 1 when the leaf behind input i takes its
 * gradient in parts, for a dest that nnm__node_grad_dest returned: it has a
 * parts callback (nnm__grad_set_parts), dest is its gradient view, and this
 * is its last edge of the walk (a later contribution would change what is
 * written now). The backward then calls, after each block,
 * nnm__node_grad_dest_part(ctx, n, i, dest, begin, end): elements
 * [begin, end) of dest (row-major) hold their final values; the leaf's
 * callback runs. nnm__node_grad_dest_done follows as usual. Both are no-ops
 * (0, NNM_OK) outside the conditions above. */
#define NNM__GRAD_BLOCK_ELEMS ((int64_t)1 << 18) /* about 1 MiB of f32 a block */
int64_t nnm__grad_block_rows(int64_t rows, int64_t cols);
int nnm__node_grad_dest_parts(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *dest);
nnm_status nnm__node_grad_dest_part(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *dest,
                                    int64_t begin, int64_t end);

/* Queues fn(user, walk) to run when the backward now running ends (as
 * PyTorch's Engine::queue_callback; DDP's final wait goes there, so the
 * rest of the backward overlaps the last bucket). walk is the backward's
 * status so far; a callback's error becomes the backward's when it had
 * none. Callbacks run in the order queued, whether the backward succeeded
 * or not. NNM_E_STATE when no backward is running, NNM_E_LIMIT when 8 are
 * queued: the caller then does the work itself. */
nnm_status nnm__backward_on_end(nnm_ctx *ctx, nnm_status (*fn)(void *user, nnm_status walk), void *user);

/* derivatives.c: record an op's node on its output y (x/w/a/b: the inputs as
 * given; xc/wc/ac/bc: the contiguous copies forward used). */
nnm_status nnm__record_unary(nnm_ctx *ctx, int32_t op, double alpha, nnm_tensor *x, nnm_tensor *y);
nnm_status nnm__record_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y);
nnm_status nnm__record_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                              nnm_tensor *wc, nnm_tensor *y);
nnm_status nnm__record_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                              nnm_tensor *y);
nnm_status nnm__record_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, nnm_tensor *rkeep, nnm_tensor *y);
nnm_status nnm__record_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y);
nnm_status nnm__record_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, nnm_tensor *count,
                           int64_t ignore_index, double smoothing, int32_t reduction, nnm_tensor *y);
nnm_status nnm__record_reshape(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y);
/* derivatives_nn.c: the nodes of the 1.3 ops. */
nnm_status nnm__record_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                           nnm_tensor *y);
nnm_status nnm__record_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, nnm_tensor *y);
nnm_status nnm__record_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t n, int32_t dim,
                              nnm_tensor *y);
nnm_status nnm__record_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, nnm_tensor *y);
nnm_status nnm__record_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor *y);
nnm_status nnm__record_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y);
nnm_status nnm__record_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                            nnm_tensor *wc, const nnm_conv_params *p, nnm_tensor *y);
nnm_status nnm__record_pool(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *xc, const nnm_pool_params *p,
                            nnm_tensor *y);
/* derivatives_nn.c: batch_norm's node (inputs x, weight, bias; saves xc,
 * wc, mean, invstd). */
nnm_status nnm__record_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *weight, nnm_tensor *bias,
                                  nnm_tensor *xc, nnm_tensor *wc, nnm_tensor *mean, nnm_tensor *invstd,
                                  int training, nnm_tensor *y);
/* derivatives_nn.c: index_select's node (input x; keeps a host copy of the
 * m indices). */
nnm_status nnm__record_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, const int64_t *idx, int64_t m,
                                    nnm_tensor *y);
/* Elements [begin, end) of leaf's gradient view hold their final values for
 * this backward (nnm__node_grad_dest_part). */
typedef nnm_status (*nnm__grad_part_fn)(void *user, nnm_tensor *leaf, int64_t begin, int64_t end);

/* grad_hooks.c - what a leaf carries beyond .grad, made on first need and
 * freed with the tensor: its post-accumulate-grad hooks, which run once per
 * backward after the leaf's last contribution (as PyTorch 2.x's, whose
 * AccumulateGrad node runs once all edges into it have delivered), and the
 * tensor its first gradient is copied into (DDP's view into a flat bucket). */
typedef struct nnm__grad_hooks {
    nnm__hook_list list;
    uint32_t mark;                /* the walk (ctx->mark_seq) `pending` counts for */
    uint32_t pending;             /* edges into the leaf that have not run yet */
    int got;                      /* a gradient arrived in that walk */
    nnm_tensor *view;             /* owned; NULL: none. When .grad is unset, the
                                   * first gradient is copied into it and it
                                   * becomes .grad (gradient_as_bucket_view) */
    nnm__grad_part_fn part;       /* NULL: none; see nnm__node_grad_dest_parts */
    void *part_user;
} nnm__grad_hooks;

/* Makes t's extras (NNM_E_NOMEM). */
nnm_status nnm__grad_hooks_get(nnm_tensor *t, nnm__grad_hooks **out);
nnm_status nnm__grad_hooks_run(nnm_tensor *leaf);
void nnm__grad_hooks_free(nnm_tensor *t);
/* Sets (view non-NULL, retained) or clears t's gradient view: a contiguous
 * f32 tensor of t's shape on t's device. */
nnm_status nnm__grad_set_view(nnm_tensor *t, nnm_tensor *view);
/* Sets (fn non-NULL) or clears the callback that receives t's gradient in
 * parts as its blocks are written into its view. */
nnm_status nnm__grad_set_parts(nnm_tensor *t, nnm__grad_part_fn fn, void *user);

#endif /* NNM_AUTOGRAD_INTERNAL_H */
