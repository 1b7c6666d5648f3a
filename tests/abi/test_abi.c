/* tests/abi/test_abi.c - the frozen ABI, checked at run time.
 *
 * plugin.h static_asserts the sizes every plugin depends on; this suite pins
 * every slot's offset as well (so a slot inserted in the middle, or two slots
 * swapped, is caught even when the size does not change), the public structs
 * of nnmod.h, the numeric values of status codes and of the DLPack-mirrored
 * enums, and the application API's conventions (versions, status names,
 * NULL handling). Offsets are those of ABI 1.1 on LP64: every 1.0 offset is
 * pinned unchanged, and the slots and args structs 1.1 appended are pinned
 * after them.
 */
#include "test_util.h"

#define OFF(type, field, want) CU_ASSERT_EQUAL(offsetof(type, field), (want))
#define SIZE(type, want) CU_ASSERT_EQUAL(sizeof(type), (want))

static void test_tensor_desc_is_dltensor(void) {
    SIZE(nnm_device, 8);
    OFF(nnm_device, type, 0);
    OFF(nnm_device, id, 4);
    SIZE(nnm_dtype, 4);
    OFF(nnm_dtype, code, 0);
    OFF(nnm_dtype, bits, 1);
    OFF(nnm_dtype, lanes, 2);
    SIZE(nnm_tensor_desc, 48);
    OFF(nnm_tensor_desc, data, 0);
    OFF(nnm_tensor_desc, device, 8);
    OFF(nnm_tensor_desc, ndim, 16);
    OFF(nnm_tensor_desc, dtype, 20);
    OFF(nnm_tensor_desc, shape, 24);
    OFF(nnm_tensor_desc, strides, 32);
    OFF(nnm_tensor_desc, byte_offset, 40);
    /* DLPack's enum values. */
    CU_ASSERT_EQUAL(NNM_DEVICE_CPU, 1);
    CU_ASSERT_EQUAL(NNM_DEVICE_CUDA, 2);
    CU_ASSERT_EQUAL(NNM_DTYPE_INT, 0);
    CU_ASSERT_EQUAL(NNM_DTYPE_UINT, 1);
    CU_ASSERT_EQUAL(NNM_DTYPE_FLOAT, 2);
    CU_ASSERT_EQUAL(NNM_DTYPE_BFLOAT, 4);
    CU_ASSERT_EQUAL(NNM_DTYPE_BOOL, 6);
    nnm_dtype f32 = NNM_F32;
    CU_ASSERT(f32.code == NNM_DTYPE_FLOAT && f32.bits == 32 && f32.lanes == 1);
}

static void test_dlpack_managed_versioned(void) {
    /* DLManagedTensorVersioned (DLPack 1.x). */
    SIZE(nnm_dlpack_version, 8);
    SIZE(nnm_dlpack_tensor, 80);
    OFF(nnm_dlpack_tensor, version, 0);
    OFF(nnm_dlpack_tensor, manager_ctx, 8);
    OFF(nnm_dlpack_tensor, deleter, 16);
    OFF(nnm_dlpack_tensor, flags, 24);
    OFF(nnm_dlpack_tensor, dl_tensor, 32);
}

static void test_env_and_desc(void) {
    SIZE(nnm_env, 16);
    OFF(nnm_env, struct_size, 0);
    OFF(nnm_env, host, 8);
    SIZE(nnm_plugin_desc, 72); /* 48 through 1.2; 1.3 appends the comms, 1.5 the domain */
    OFF(nnm_plugin_desc, struct_size, 0);
    OFF(nnm_plugin_desc, abi_major, 4);
    OFF(nnm_plugin_desc, abi_minor, 6);
    OFF(nnm_plugin_desc, name, 8);
    OFF(nnm_plugin_desc, description, 16);
    OFF(nnm_plugin_desc, n_layers, 24);
    OFF(nnm_plugin_desc, n_backends, 28);
    OFF(nnm_plugin_desc, layers, 32);
    OFF(nnm_plugin_desc, backends, 40);
    OFF(nnm_plugin_desc, n_comms, 48);
    OFF(nnm_plugin_desc, comms, 56);
    OFF(nnm_plugin_desc, domain, 64); /* 1.5 */
    CU_ASSERT_STRING_EQUAL(NNM_PLUGIN_ENTRY_SYMBOL, "nnm_plugin_entry");
}

static void test_host_table(void) {
    /* ABI 1.0: 22 slots after the header, in this order; 1.1 appends 7, 1.2 five,
     * 1.3 fifteen, 1.4 one, 1.5 five. */
    static const size_t want[] = {
        offsetof(nnm_host, set_error),    offsetof(nnm_host, config_int),
        offsetof(nnm_host, config_float), offsetof(nnm_host, config_bool),
        offsetof(nnm_host, config_str),   offsetof(nnm_host, config_ints),
        offsetof(nnm_host, param_new),    offsetof(nnm_host, buffer_new),
        offsetof(nnm_host, input_spec),   offsetof(nnm_host, is_training),
        offsetof(nnm_host, grad_enabled), offsetof(nnm_host, device),
        offsetof(nnm_host, child_count),  offsetof(nnm_host, child_call),
        offsetof(nnm_host, tensor_desc),  offsetof(nnm_host, tensor_retain),
        offsetof(nnm_host, tensor_release), offsetof(nnm_host, tensor_new),
        offsetof(nnm_host, op_linear),    offsetof(nnm_host, op_matmul),
        offsetof(nnm_host, op_binary),    offsetof(nnm_host, op_unary),
        /* ---- 1.1 ---- */
        offsetof(nnm_host, op_reduce),    offsetof(nnm_host, op_log_softmax),
        offsetof(nnm_host, op_nll),       offsetof(nnm_host, op_reshape),
        offsetof(nnm_host, save_for_backward), offsetof(nnm_host, saved_tensors),
        offsetof(nnm_host, accumulate_grad),
        /* ---- 1.2 ---- */
        offsetof(nnm_host, config_floats), offsetof(nnm_host, config_strs),
        offsetof(nnm_host, child_info),    offsetof(nnm_host, descendant_info),
        offsetof(nnm_host, descendant_call),
        /* ---- 1.3 ---- */
        offsetof(nnm_host, set_error_msg), offsetof(nnm_host, config_type),
        offsetof(nnm_host, config_int_or_ints), offsetof(nnm_host, tensor_read_f32),
        offsetof(nnm_host, op_full),       offsetof(nnm_host, op_rand),
        offsetof(nnm_host, op_bmm),        offsetof(nnm_host, op_permute),
        offsetof(nnm_host, op_concat),     offsetof(nnm_host, op_slice),
        offsetof(nnm_host, op_softmax),    offsetof(nnm_host, op_where),
        offsetof(nnm_host, op_conv),       offsetof(nnm_host, op_pool),
        offsetof(nnm_host, op_update),
        /* ---- 1.4 ---- */
        offsetof(nnm_host, op_batch_norm),
        /* ---- 1.5 ---- */
        offsetof(nnm_host, tensor_from_host), offsetof(nnm_host, op_index_select),
        offsetof(nnm_host, buffer_new_v2),    offsetof(nnm_host, set_output_names),
        offsetof(nnm_host, op_rnn),
        offsetof(nnm_host, child_new),
        offsetof(nnm_host, op_cast),       offsetof(nnm_host, op_detach),
        offsetof(nnm_host, op_arg_reduce),
        offsetof(nnm_host, op_ctc_loss),
        offsetof(nnm_host, op_embedding_bag),
        offsetof(nnm_host, op_attention),
        offsetof(nnm_host, descendant_tensor),
        offsetof(nnm_host, op_layer_norm),
    };
    OFF(nnm_host, struct_size, 0);
    OFF(nnm_host, abi_major, 4);
    OFF(nnm_host, abi_minor, 6);
    CU_ASSERT_EQUAL(sizeof want / sizeof want[0], 64);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CU_ASSERT_EQUAL(want[i], 8 + 8 * i);
    SIZE(nnm_host, 8 + 64 * 8);
}

static void test_layer_vtable(void) {
    SIZE(nnm_layer_vtable, 112);
    OFF(nnm_layer_vtable, struct_size, 0);
    OFF(nnm_layer_vtable, flags, 4);
    OFF(nnm_layer_vtable, name, 8);
    OFF(nnm_layer_vtable, version_major, 16);
    OFF(nnm_layer_vtable, version_minor, 20);
    OFF(nnm_layer_vtable, version_patch, 24);
    OFF(nnm_layer_vtable, n_inputs, 28);
    OFF(nnm_layer_vtable, n_outputs, 32);
    OFF(nnm_layer_vtable, create, 40);
    OFF(nnm_layer_vtable, destroy, 48);
    OFF(nnm_layer_vtable, forward, 56);
    OFF(nnm_layer_vtable, extra_repr, 64);
    OFF(nnm_layer_vtable, backward, 72); /* 1.1 */
    OFF(nnm_layer_vtable, finalize, 80); /* 1.2 */
    OFF(nnm_layer_vtable, config_fields, 88);
    OFF(nnm_layer_vtable, n_config_fields, 96);
    OFF(nnm_layer_vtable, display_name, 104);
    SIZE(nnm_config_field, 24);
    OFF(nnm_config_field, key, 0);
    OFF(nnm_config_field, type, 8);
    OFF(nnm_config_field, flags, 12);
    OFF(nnm_config_field, doc, 16);
    CU_ASSERT_EQUAL(NNM_CONFIG_INT, 0);
    CU_ASSERT_EQUAL(NNM_CONFIG_STRS, 6);
    CU_ASSERT_EQUAL(NNM_CONFIG_REQUIRED, 1u);
    CU_ASSERT_EQUAL(NNM_LAYER_CONTAINER, 1u);
    CU_ASSERT_EQUAL(NNM_LAYER_OWNS_CHILDREN, 2u);
    CU_ASSERT_EQUAL(NNM_ARITY_ANY, -1);
    CU_ASSERT_EQUAL(NNM_SPEC_LEADING_ANY, 1u);
}

static void test_backend_vtable_and_args(void) {
    SIZE(nnm_backend_vtable, 360);
    OFF(nnm_backend_vtable, name, 8);
    OFF(nnm_backend_vtable, version_major, 16);
    OFF(nnm_backend_vtable, device_type, 28);
    OFF(nnm_backend_vtable, init, 32);
    OFF(nnm_backend_vtable, shutdown, 40);
    OFF(nnm_backend_vtable, alloc, 48);
    OFF(nnm_backend_vtable, free, 56);
    OFF(nnm_backend_vtable, memcpy, 64);
    OFF(nnm_backend_vtable, fill, 72);
    OFF(nnm_backend_vtable, gemm, 80);
    OFF(nnm_backend_vtable, binary, 88);
    OFF(nnm_backend_vtable, unary, 96);
    /* ---- 1.1 ---- */
    OFF(nnm_backend_vtable, reduce, 104);
    OFF(nnm_backend_vtable, log_softmax, 112);
    OFF(nnm_backend_vtable, nll, 120);
    OFF(nnm_backend_vtable, nll_backward, 128);
    OFF(nnm_backend_vtable, sgd_step, 136);
    OFF(nnm_backend_vtable, adam_step, 144);
    /* ---- 1.3 ---- */
    OFF(nnm_backend_vtable, im2col, 152);
    OFF(nnm_backend_vtable, col2im, 160);
    OFF(nnm_backend_vtable, pool, 168);
    OFF(nnm_backend_vtable, pool_backward, 176);
    OFF(nnm_backend_vtable, softmax, 184);
    OFF(nnm_backend_vtable, where, 192);
    /* ---- 1.4 ---- */
    OFF(nnm_backend_vtable, conv, 200);
    OFF(nnm_backend_vtable, conv_backward, 208);
    OFF(nnm_backend_vtable, batch_norm, 216);
    OFF(nnm_backend_vtable, batch_norm_backward, 224);
    /* ---- 1.5 ---- */
    OFF(nnm_backend_vtable, index_select, 232);
    OFF(nnm_backend_vtable, index_add, 240);
    OFF(nnm_backend_vtable, rnn_cell, 248);
    OFF(nnm_backend_vtable, rnn_cell_backward, 256);
    OFF(nnm_backend_vtable, cast, 264);
    OFF(nnm_backend_vtable, arg_reduce, 272);
    OFF(nnm_backend_vtable, ctc_loss, 280);
    OFF(nnm_backend_vtable, ctc_loss_backward, 288);
    OFF(nnm_backend_vtable, set_num_threads, 296);
    OFF(nnm_backend_vtable, embedding_bag, 304);
    OFF(nnm_backend_vtable, embedding_bag_backward, 312);
    OFF(nnm_backend_vtable, layer_norm, 320);
    OFF(nnm_backend_vtable, layer_norm_backward, 328);
    OFF(nnm_backend_vtable, synchronize, 336);
    OFF(nnm_backend_vtable, host_alloc, 344);
    OFF(nnm_backend_vtable, host_free, 352);
    SIZE(nnm_layer_norm_params, 16);
    OFF(nnm_layer_norm_params, normalized_ndim, 4);
    OFF(nnm_layer_norm_params, eps, 8);
    SIZE(nnm_layer_norm_args, 120);
    OFF(nnm_layer_norm_args, rows, 8);
    OFF(nnm_layer_norm_args, cols, 16);
    OFF(nnm_layer_norm_args, eps, 24);
    OFF(nnm_layer_norm_args, x, 32);
    OFF(nnm_layer_norm_args, residual, 40);
    OFF(nnm_layer_norm_args, grad_bias, 112);
    SIZE(nnm_cast_args, 24);
    OFF(nnm_cast_args, x, 8);
    OFF(nnm_cast_args, out, 16);
    SIZE(nnm_arg_reduce_args, 48);
    OFF(nnm_arg_reduce_args, op, 4);
    OFF(nnm_arg_reduce_args, outer, 8);
    OFF(nnm_arg_reduce_args, x, 32);
    OFF(nnm_arg_reduce_args, out, 40);
    SIZE(nnm_ctc_params, 16);
    OFF(nnm_ctc_params, blank, 8);
    SIZE(nnm_ctc_args, 112);
    OFF(nnm_ctc_args, blank, 8);
    OFF(nnm_ctc_args, t, 16);
    OFF(nnm_ctc_args, log_probs, 48);
    OFF(nnm_ctc_args, grad_log_probs, 104);
    SIZE(nnm_embedding_bag_params, 24);
    OFF(nnm_embedding_bag_params, mode, 4);
    OFF(nnm_embedding_bag_params, include_last_offset, 8);
    OFF(nnm_embedding_bag_params, padding_idx, 16);
    SIZE(nnm_embedding_bag_args, 120);
    OFF(nnm_embedding_bag_args, padding_idx, 8);
    OFF(nnm_embedding_bag_args, num_embeddings, 16);
    OFF(nnm_embedding_bag_args, bags, 40);
    OFF(nnm_embedding_bag_args, weight, 48);
    OFF(nnm_embedding_bag_args, grad_per_sample_weights, 112);
    SIZE(nnm_attention_params, 64);
    OFF(nnm_attention_params, num_heads, 4);
    OFF(nnm_attention_params, is_causal, 12);
    OFF(nnm_attention_params, q_offset, 16);
    OFF(nnm_attention_params, qk_dim, 40);
    OFF(nnm_attention_params, scale, 56);
    CU_ASSERT_EQUAL(NNM_UNARY_SIN, 18);
    CU_ASSERT_EQUAL(NNM_UNARY_TRUNC, 23);
    CU_ASSERT_EQUAL(NNM_UNARY_SILU, 24);
    CU_ASSERT_EQUAL(NNM_UNARY_ELU, 29);
    CU_ASSERT_EQUAL(NNM_UNARY_HARDSIGMOID, 31);
    CU_ASSERT_EQUAL(NNM_UNARY_SILU_GRAD, 32);
    CU_ASSERT_EQUAL(NNM_UNARY_HARDSIGMOID_GRAD, 39);
    CU_ASSERT_EQUAL(NNM_BINARY_POW, 6);
    CU_ASSERT_EQUAL(NNM_BACKEND_OPS_1_5, 2u);
    SIZE(nnm_conv_params, 136);
    SIZE(nnm_pool_params, 152);
    SIZE(nnm_im2col_args, 176);
    SIZE(nnm_pool_args, 152);
    SIZE(nnm_softmax_args, 48);
    SIZE(nnm_where_args, 40);
    SIZE(nnm_batch_norm_params, 24);
    SIZE(nnm_conv_args, 72);
    SIZE(nnm_batch_norm_args, 144);
    SIZE(nnm_index_args, 64);
    OFF(nnm_index_args, elem_size, 4);
    OFF(nnm_index_args, m, 32);
    OFF(nnm_index_args, index, 40);
    OFF(nnm_index_args, src, 48);
    OFF(nnm_index_args, dst, 56);
    SIZE(nnm_rnn_params, 16);
    OFF(nnm_rnn_params, mode, 4);
    OFF(nnm_rnn_params, reverse, 8);
    SIZE(nnm_rnn_cell_args, 128);
    OFF(nnm_rnn_cell_args, batch, 8);
    OFF(nnm_rnn_cell_args, gx, 24);
    OFF(nnm_rnn_cell_args, act, 80);
    OFF(nnm_rnn_cell_args, dh_prev, 120);
    CU_ASSERT_EQUAL(NNM_RNN_TANH, 0);
    CU_ASSERT_EQUAL(NNM_RNN_RELU, 1);
    CU_ASSERT_EQUAL(NNM_RNN_LSTM, 2);
    CU_ASSERT_EQUAL(NNM_RNN_GRU, 3);
    CU_ASSERT_EQUAL(NNM_UNARY_ERF, 12);
    CU_ASSERT_EQUAL(NNM_UNARY_GE, 17);
    CU_ASSERT_EQUAL(NNM_CONFIG_INT_OR_INTS, 7);
    CU_ASSERT_EQUAL(NNM_CONFIG_ANY, 8);
    CU_ASSERT_EQUAL(NNM_BACKEND_OPS_1_3, 1u);

    SIZE(nnm_gemm_args, 96);
    OFF(nnm_gemm_args, trans_a, 4);
    OFF(nnm_gemm_args, trans_b, 8);
    OFF(nnm_gemm_args, m, 16);
    OFF(nnm_gemm_args, n, 24);
    OFF(nnm_gemm_args, k, 32);
    OFF(nnm_gemm_args, alpha, 40);
    OFF(nnm_gemm_args, beta, 44);
    OFF(nnm_gemm_args, a, 48);
    OFF(nnm_gemm_args, lda, 56);
    OFF(nnm_gemm_args, b, 64);
    OFF(nnm_gemm_args, ldb, 72);
    OFF(nnm_gemm_args, c, 80);
    OFF(nnm_gemm_args, ldc, 88);

    SIZE(nnm_binary_args, 32);
    OFF(nnm_binary_args, op, 4);
    OFF(nnm_binary_args, a, 8);
    OFF(nnm_binary_args, b, 16);
    OFF(nnm_binary_args, out, 24);
    SIZE(nnm_unary_args, 32);
    OFF(nnm_unary_args, op, 4);
    OFF(nnm_unary_args, alpha, 8);
    OFF(nnm_unary_args, x, 16);
    OFF(nnm_unary_args, out, 24);
}

/* The args structs ABI 1.1 added. */
static void test_backend_args_1_1(void) {
    SIZE(nnm_reduce_args, 32);
    OFF(nnm_reduce_args, struct_size, 0);
    OFF(nnm_reduce_args, op, 4);
    OFF(nnm_reduce_args, alpha, 8);
    OFF(nnm_reduce_args, x, 16);
    OFF(nnm_reduce_args, out, 24);

    SIZE(nnm_log_softmax_args, 24);
    OFF(nnm_log_softmax_args, reserved, 4);
    OFF(nnm_log_softmax_args, x, 8);
    OFF(nnm_log_softmax_args, out, 16);

    SIZE(nnm_nll_args, 56);
    OFF(nnm_nll_args, reserved, 4);
    OFF(nnm_nll_args, ignore_index, 8);
    OFF(nnm_nll_args, label_smoothing, 16);
    OFF(nnm_nll_args, logp, 24);
    OFF(nnm_nll_args, target, 32);
    OFF(nnm_nll_args, out, 40);
    OFF(nnm_nll_args, count, 48);

    SIZE(nnm_nll_backward_args, 48);
    OFF(nnm_nll_backward_args, reserved, 4);
    OFF(nnm_nll_backward_args, ignore_index, 8);
    OFF(nnm_nll_backward_args, label_smoothing, 16);
    OFF(nnm_nll_backward_args, grad, 24);
    OFF(nnm_nll_backward_args, target, 32);
    OFF(nnm_nll_backward_args, grad_logp, 40);

    SIZE(nnm_sgd_args, 80);
    OFF(nnm_sgd_args, nesterov, 4);
    OFF(nnm_sgd_args, first_step, 8);
    OFF(nnm_sgd_args, reserved, 12);
    OFF(nnm_sgd_args, n, 16);
    OFF(nnm_sgd_args, param, 24);
    OFF(nnm_sgd_args, grad, 32);
    OFF(nnm_sgd_args, momentum_buf, 40);
    OFF(nnm_sgd_args, lr, 48);
    OFF(nnm_sgd_args, momentum, 56);
    OFF(nnm_sgd_args, dampening, 64);
    OFF(nnm_sgd_args, weight_decay, 72);

    SIZE(nnm_adam_args, 104);
    OFF(nnm_adam_args, decoupled, 4);
    OFF(nnm_adam_args, step, 8);
    OFF(nnm_adam_args, n, 16);
    OFF(nnm_adam_args, param, 24);
    OFF(nnm_adam_args, grad, 32);
    OFF(nnm_adam_args, exp_avg, 40);
    OFF(nnm_adam_args, exp_avg_sq, 48);
    OFF(nnm_adam_args, max_exp_avg_sq, 56);
    OFF(nnm_adam_args, lr, 64);
    OFF(nnm_adam_args, beta1, 72);
    OFF(nnm_adam_args, beta2, 80);
    OFF(nnm_adam_args, eps, 88);
    OFF(nnm_adam_args, weight_decay, 96);
}

static void test_op_and_init_codes(void) {
    CU_ASSERT_EQUAL(NNM_UNARY_COPY, 0);
    CU_ASSERT_EQUAL(NNM_UNARY_RELU, 2);
    CU_ASSERT_EQUAL(NNM_UNARY_SIGMOID, 6);
    CU_ASSERT_EQUAL(NNM_UNARY_SCALE, 9);
    CU_ASSERT_EQUAL(NNM_UNARY_STEP, 10); /* 1.1 */
    CU_ASSERT_EQUAL(NNM_UNARY_SIGN, 11);
    CU_ASSERT_EQUAL(NNM_REDUCE_SUM, 0);
    CU_ASSERT_EQUAL(NNM_REDUCE_MEAN, 1);
    CU_ASSERT_EQUAL(NNM_REDUCE_MAX, 2);
    CU_ASSERT_EQUAL(NNM_REDUCE_MIN, 3);
    CU_ASSERT_EQUAL(NNM_REDUCTION_NONE, 0);
    CU_ASSERT_EQUAL(NNM_REDUCTION_MEAN, 1);
    CU_ASSERT_EQUAL(NNM_REDUCTION_SUM, 2);
    CU_ASSERT_EQUAL(NNM_BINARY_ADD, 0);
    CU_ASSERT_EQUAL(NNM_BINARY_MIN, 5);
    CU_ASSERT_EQUAL(NNM_INIT_ZEROS, 0);
    CU_ASSERT_EQUAL(NNM_INIT_NORMAL, 4);
}

static void test_app_structs(void) {
    SIZE(nnm_ctx_options, 16);
    OFF(nnm_ctx_options, flags, 4);
    OFF(nnm_ctx_options, seed, 8);
    SIZE(nnm_ctx_stats, 72);
    OFF(nnm_ctx_stats, heap_allocs, 8);
    OFF(nnm_ctx_stats, live_modules, 48);
    OFF(nnm_ctx_stats, peak_bytes_in_use, 56);
    OFF(nnm_ctx_stats, peak_bytes_reserved, 64);
    SIZE(nnm_plugin_info, 48);
    OFF(nnm_plugin_info, status, 4);
    OFF(nnm_plugin_info, path, 8);
    OFF(nnm_plugin_info, name, 16);
    OFF(nnm_plugin_info, error, 24);
    OFF(nnm_plugin_info, abi_major, 32);
    OFF(nnm_plugin_info, abi_minor, 34);
    OFF(nnm_plugin_info, n_layers, 36);
    OFF(nnm_plugin_info, n_backends, 40);
    OFF(nnm_plugin_info, live_modules, 44);
    SIZE(nnm_profile_event, 48);
    OFF(nnm_profile_event, status, 4);
    OFF(nnm_profile_event, path, 8);
    OFF(nnm_profile_event, type, 16);
    OFF(nnm_profile_event, start_ns, 24);
    OFF(nnm_profile_event, end_ns, 32);
    OFF(nnm_profile_event, depth, 40);
    CU_ASSERT_EQUAL(NNM_CTX_NO_DISCOVERY, 1u);
}

/* Every status code: its frozen value and its name. */
static const struct {
    nnm_status code;
    int32_t value;
    const char *name;
} status_table[] = {
    {NNM_OK, 0, "NNM_OK"},
    {NNM_E_INVALID, -1, "NNM_E_INVALID"},
    {NNM_E_NOMEM, -2, "NNM_E_NOMEM"},
    {NNM_E_SHAPE, -3, "NNM_E_SHAPE"},
    {NNM_E_DTYPE, -4, "NNM_E_DTYPE"},
    {NNM_E_DEVICE, -5, "NNM_E_DEVICE"},
    {NNM_E_NOT_FOUND, -6, "NNM_E_NOT_FOUND"},
    {NNM_E_TYPE, -7, "NNM_E_TYPE"},
    {NNM_E_VERSION, -8, "NNM_E_VERSION"},
    {NNM_E_LOAD, -9, "NNM_E_LOAD"},
    {NNM_E_UNSUPPORTED, -10, "NNM_E_UNSUPPORTED"},
    {NNM_E_STATE, -11, "NNM_E_STATE"},
    {NNM_E_IO, -12, "NNM_E_IO"},
    {NNM_E_PLUGIN, -13, "NNM_E_PLUGIN"},
    {NNM_E_HOOK, -14, "NNM_E_HOOK"},
    {NNM_E_NO_DEVICE, -15, "NNM_E_NO_DEVICE"},
    {NNM_E_EXISTS, -16, "NNM_E_EXISTS"},
    {NNM_E_LIMIT, -17, "NNM_E_LIMIT"},
    {NNM_E_TIMEOUT, -18, "NNM_E_TIMEOUT"}, /* 1.3 */
};

static void test_status_codes(void) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
        const char *name = nnm_status_name(status_table[i].code);
        const char *str = nnm_status_str(status_table[i].code);
        CU_ASSERT_EQUAL(status_table[i].code, status_table[i].value);
        CU_ASSERT_PTR_NOT_NULL_FATAL(name);
        CU_ASSERT_STRING_EQUAL(name, status_table[i].name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(str);
        CU_ASSERT(str[0] != '\0');
    }
    CU_ASSERT_STRING_EQUAL(nnm_status_name(-1000), "unknown");
    CU_ASSERT_STRING_EQUAL(nnm_status_name(1), "unknown");
    CU_ASSERT_PTR_NOT_NULL(nnm_status_str(-1000));
}

static void test_versions(void) {
    uint16_t major = 0xffff, minor = 0xffff;
    nnm_abi_version(&major, &minor);
    CU_ASSERT_EQUAL(major, NNM_ABI_MAJOR);
    CU_ASSERT_EQUAL(minor, NNM_ABI_MINOR);
    nnm_abi_version(NULL, NULL); /* either may be NULL */
    CU_ASSERT_STRING_EQUAL(nnm_version(), NNM_VERSION_STRING);
}

/* "Passing NULL to a release/free function is a harmless no-op. Passing NULL
 * where an object is required returns NNM_E_INVALID (never crashes)." */
static void test_null_conventions(void) {
    nnm_ctx *ctx = (nnm_ctx *)(uintptr_t)1; /* must be overwritten with NULL */
    nnm_module *m = (nnm_module *)(uintptr_t)1;
    nnm_tensor *t = (nnm_tensor *)(uintptr_t)1;

    nnm_ctx_free(NULL);
    nnm_module_release(NULL);
    nnm_tensor_release(NULL);
    nnm_config_free(NULL);
    nnm_hook_remove(NULL);
    CU_ASSERT_PTR_NOT_NULL(nnm_ctx_errmsg(NULL));
    CU_ASSERT_PTR_NULL(nnm_tensor_desc_get(NULL));
    CU_ASSERT_EQUAL(nnm_tensor_numel(NULL), 0);

    CU_ASSERT_EQUAL(nnm_ctx_new(NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_plugin_load(NULL, "x.so"), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_call(NULL, NULL, 0, NULL, 0), NNM_E_INVALID);

    /* A context without discovery: failing creators set *out to NULL. */
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    CU_ASSERT_EQUAL(nnm_plugin_count(ctx), 0);
    CU_ASSERT_EQUAL(nnm_plugin_load(ctx, NULL), NNM_E_INVALID);
    CU_ASSERT_NOT_EQUAL(nnm_module_create(ctx, "no_such_layer", NULL, &m), NNM_OK);
    CU_ASSERT_PTR_NULL(m);
    CU_ASSERT(strstr(nnm_ctx_errmsg(ctx), "no_such_layer") != NULL);
    const int64_t shape[1] = {3};
    CU_ASSERT(nnm_tensor_from_f32(ctx, -1, shape, NULL, &t) < 0);
    CU_ASSERT_PTR_NULL(t);
    nnm_ctx_free(ctx);
}

int main(void) {
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"tensor descriptor is DLTensor", test_tensor_desc_is_dltensor},
        {"DLPack managed tensor (versioned)", test_dlpack_managed_versioned},
        {"env and plugin descriptor", test_env_and_desc},
        {"host table slot offsets", test_host_table},
        {"layer vtable", test_layer_vtable},
        {"backend vtable and args", test_backend_vtable_and_args},
        {"backend args (1.1)", test_backend_args_1_1},
        {"op and init codes", test_op_and_init_codes},
        {"application structs", test_app_structs},
        {"status codes and names", test_status_codes},
        {"versions", test_versions},
        {"NULL conventions", test_null_conventions},
    };
    CU_pSuite suite = tu_suite("abi", NULL, NULL);
    if (!suite)
        return 2;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn))
            return 2;
    return tu_run();
}
