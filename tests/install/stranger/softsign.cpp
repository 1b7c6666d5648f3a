// softsign.cpp - a layer plugin in C++, from docs/writing-a-plugin.md and the
// installed nnmod/plugin.h alone (tests/install/stranger). Built with
//   g++ -std=c++NN -Wall -Wextra -Werror -pedantic -shared -fPIC -fvisibility=hidden
// as C++11, C++17 and C++20.
//
//   stranger_cxx.softsign   y = alpha * x / (1 + |x|); `alpha` a learned [1]
//                           parameter when learn_alpha, else the config value.
//                           Integer inputs are cast to f32 first.
#include <cstdio>
#include <new>

#include "nnmod/plugin.h"

namespace {

// One new reference, released when it goes out of scope.
class Ref {
  public:
    explicit Ref(const nnm_host *h) : h_(h) {}
    Ref(const Ref &) = delete;
    Ref &operator=(const Ref &) = delete;
    ~Ref() { h_->tensor_release(t_); }
    nnm_tensor **out() { return &t_; }
    nnm_tensor *get() const { return t_; }

  private:
    const nnm_host *h_;
    nnm_tensor *t_ = nullptr;
};

struct Softsign {
    double alpha = 1.0;
    nnm_tensor *alpha_param = nullptr; // borrowed from the module

    static nnm_status create(nnm_env *env, void **self) {
        const nnm_host *h = env->host;
        const double one = 1.0;
        const int no = 0;
        double alpha = 1.0;
        int learn = 0;
        nnm_status st;
        if (!NNM_HOST_HAS(h, op_cast) || !NNM_HOST_HAS(h, op_full))
            return h->set_error(env, NNM_E_VERSION, "softsign: needs a host of ABI 1.5 or later");
        if ((st = h->config_float(env, "alpha", &one, &alpha)) != NNM_OK)
            return st;
        if ((st = h->config_bool(env, "learn_alpha", &no, &learn)) != NNM_OK)
            return st;
        Softsign *s = new (std::nothrow) Softsign;
        if (!s)
            return h->set_error(env, NNM_E_NOMEM, "softsign: out of memory");
        s->alpha = alpha;
        if (learn) {
            const int64_t shape[1] = {1};
            st = h->param_new(env, "alpha", 1, shape, NNM_INIT_CONSTANT, alpha, 0.0, &s->alpha_param);
            if (st != NNM_OK) {
                delete s;
                return st;
            }
        }
        *self = s;
        return NNM_OK;
    }

    static void destroy(void *self) { delete static_cast<Softsign *>(self); }

    static nnm_status forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t, nnm_tensor **out,
                              uint32_t) {
        const nnm_host *h = env->host;
        const Softsign *s = static_cast<const Softsign *>(self);
        Ref x(h), a(h), d(h), q(h);
        // x.to(float32): a new reference to in[0] itself when it is f32 already
        nnm_status st = h->op_cast(env, in[0], NNM_F32, x.out());
        if (st == NNM_OK)
            st = h->op_unary(env, NNM_UNARY_ABS, x.get(), 0.0, a.out());
        if (st == NNM_OK)
            st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, a.get(), 1.0, d.out());
        if (st == NNM_OK)
            st = h->op_binary(env, NNM_BINARY_DIV, x.get(), d.get(), q.out());
        if (st != NNM_OK)
            return st;
        if (s->alpha_param)
            return h->op_binary(env, NNM_BINARY_MUL, q.get(), s->alpha_param, &out[0]);
        return h->op_unary(env, NNM_UNARY_SCALE, q.get(), s->alpha, &out[0]);
    }

    static int extra_repr(void *self, char *buf, size_t cap) {
        const Softsign *s = static_cast<const Softsign *>(self);
        return std::snprintf(buf, cap, "alpha=%g%s", s->alpha, s->alpha_param ? ", learn_alpha=True" : "");
    }
};

constexpr nnm_config_field softsign_config[] = {
    {"alpha", NNM_CONFIG_FLOAT, 0, "output scale (default 1)"},
    {"learn_alpha", NNM_CONFIG_BOOL, 0, "make alpha a learned parameter (default false)"},
};

// The vtable and the descriptor are built by functions, not designated
// initialisers (C++20 only, and g++ 12 -Wextra warns about every member they
// leave out): value-initialised (every slot NULL), then the fields we use.
// constexpr from C++14 (constant-initialised); C++11 sets them at load.
#if __cplusplus >= 201402L
#define STRANGER_CONSTEXPR constexpr
#else
#define STRANGER_CONSTEXPR const
#endif
#if __cplusplus >= 201402L
constexpr
#endif
nnm_layer_vtable make_layer() {
    nnm_layer_vtable v{};
    v.struct_size = sizeof(nnm_layer_vtable);
    v.name = "softsign";
    v.version_major = 1;
    v.n_inputs = 1;
    v.n_outputs = 1;
    v.create = Softsign::create;
    v.destroy = Softsign::destroy;
    v.forward = Softsign::forward;
    v.extra_repr = Softsign::extra_repr;
    v.config_fields = softsign_config;
    v.n_config_fields = sizeof softsign_config / sizeof softsign_config[0];
    v.display_name = "Softsign";
    return v;
}
STRANGER_CONSTEXPR nnm_layer_vtable softsign_layer = make_layer();
const nnm_layer_vtable *const layers[] = {&softsign_layer};
#if __cplusplus >= 201402L
constexpr
#endif
nnm_plugin_desc make_desc() {
    nnm_plugin_desc d{};
    d.struct_size = sizeof(nnm_plugin_desc);
    d.abi_major = NNM_ABI_MAJOR;
    d.abi_minor = NNM_ABI_MINOR;
    d.name = "stranger_cxx";
    d.description = "softsign, a layer written in C++";
    d.n_layers = 1;
    d.layers = layers;
    d.domain = "stranger_cxx";
    return d;
}
STRANGER_CONSTEXPR nnm_plugin_desc desc = make_desc();

} // namespace

NNM_PLUGIN_DEFINE(desc)
