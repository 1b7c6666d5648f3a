/* tools/nnm/train_common.c - the training settings, data, fit checks and
 * evaluation shared by nnm train, eval and predict (see train_common.h). */
#include "train_common.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings ------------------------------------------------------------ */

enum kind { K_STR, K_FLOAT, K_INT, K_BOOL, K_BETAS, K_SHAPE, K_DATA, K_DEVICE };

typedef struct key_def {
    const char *key;  /* in the "training" section; the flag is --key with '-' for '_' */
    int kind;
} key_def;

static const key_def keys[] = {
    {"optimizer", K_STR},     {"lr", K_FLOAT},          {"momentum", K_FLOAT},
    {"dampening", K_FLOAT},   {"nesterov", K_BOOL},     {"betas", K_BETAS},
    {"eps", K_FLOAT},         {"amsgrad", K_BOOL},      {"weight_decay", K_FLOAT},
    {"lr_schedule", K_STR},   {"step_size", K_INT},     {"gamma", K_FLOAT},
    {"min_lr", K_FLOAT},      {"batch_size", K_INT},    {"epochs", K_INT},
    {"loss", K_STR},          {"label_smoothing", K_FLOAT}, {"seed", K_INT},
    {"train_data", K_DATA},   {"test_data", K_DATA},    {"inputs_name", K_STR},
    {"targets_name", K_STR},  {"input_shape", K_SHAPE}, {"normalize", K_BOOL},
    {"mean", K_FLOAT},        {"std", K_FLOAT},         {"scale", K_FLOAT},
    {"drop_last", K_BOOL},    {"max_data_bytes", K_INT}, {"allow_nonfinite", K_BOOL},
    {"device", K_DEVICE},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static int find_key(const char *k) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].key, k) == 0) return (int)i;
    return -1;
}

/* One value, from either source. */
typedef struct value {
    const char *s;
    double f;
    int64_t i;
    int b;
    double betas[2];
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS];
    const char *data[2];
    size_t n_data;
} value;

static int copy_str(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap) return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* Joins base_dir and a relative path (base_dir NULL or absolute path: as is). */
static int data_path(char *dst, size_t cap, const char *base_dir, const char *path) {
    if (!base_dir || !*base_dir || path[0] == '/') return copy_str(dst, cap, path);
    int n = snprintf(dst, cap, "%s/%s", base_dir, path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Sets key k from v; returns NULL or a static complaint. */
static const char *set_value(train_params *p, const char *k, const value *v, const char *base_dir) {
    if (!strcmp(k, "optimizer")) {
        if (strcmp(v->s, "sgd") && strcmp(v->s, "adam") && strcmp(v->s, "adamw"))
            return "expected \"sgd\", \"adam\" or \"adamw\"";
        copy_str(p->optimizer, sizeof p->optimizer, v->s);
    } else if (!strcmp(k, "lr_schedule")) {
        if (strcmp(v->s, "none") && strcmp(v->s, "step") && strcmp(v->s, "cosine"))
            return "expected \"none\", \"step\" or \"cosine\"";
        copy_str(p->schedule, sizeof p->schedule, v->s);
    } else if (!strcmp(k, "loss")) {
        if (strcmp(v->s, "cross_entropy") && strcmp(v->s, "nll_loss") &&
            strcmp(v->s, "mse_loss") && strcmp(v->s, "bce_with_logits") && strcmp(v->s, "l1_loss") &&
            strcmp(v->s, "smooth_l1_loss") && strcmp(v->s, "huber_loss"))
            return "expected \"cross_entropy\", \"nll_loss\", \"mse_loss\", \"l1_loss\", "
                   "\"smooth_l1_loss\", \"huber_loss\" or \"bce_with_logits\"";
        copy_str(p->loss, sizeof p->loss, v->s);
    } else if (!strcmp(k, "inputs_name") || !strcmp(k, "targets_name")) {
        char *dst = k[0] == 'i' ? p->inputs_name : p->targets_name;
        if (!v->s[0] || copy_str(dst, sizeof p->inputs_name, v->s)) return "expected a tensor name";
    } else if (!strcmp(k, "lr") || !strcmp(k, "momentum") || !strcmp(k, "dampening") ||
               !strcmp(k, "eps") || !strcmp(k, "weight_decay") || !strcmp(k, "gamma") ||
               !strcmp(k, "min_lr") || !strcmp(k, "label_smoothing") || !strcmp(k, "mean") ||
               !strcmp(k, "std") || !strcmp(k, "scale")) {
        if (!isfinite(v->f)) return "expected a finite number";
        if (strcmp(k, "mean") && v->f < 0) return "expected a number >= 0";
        if (!strcmp(k, "lr")) p->lr = v->f;
        else if (!strcmp(k, "momentum")) p->momentum = v->f;
        else if (!strcmp(k, "dampening")) p->dampening = v->f;
        else if (!strcmp(k, "eps")) p->eps = v->f;
        else if (!strcmp(k, "weight_decay")) p->weight_decay = v->f;
        else if (!strcmp(k, "gamma")) p->gamma = v->f;
        else if (!strcmp(k, "min_lr")) p->min_lr = v->f;
        else if (!strcmp(k, "label_smoothing")) {
            if (v->f > 1) return "expected a number in [0, 1]";
            p->label_smoothing = v->f;
        } else if (!strcmp(k, "mean")) p->mean = v->f, p->have_mean = 1;
        else if (!strcmp(k, "std")) {
            if (v->f == 0) return "expected a number > 0";
            p->std = v->f, p->have_std = 1;
        } else p->scale = v->f;
    } else if (!strcmp(k, "step_size") || !strcmp(k, "batch_size") || !strcmp(k, "epochs")) {
        if (v->i < 1 || v->i > ((int64_t)1 << 40)) return "expected an integer >= 1";
        if (!strcmp(k, "step_size")) p->step_size = v->i;
        else if (!strcmp(k, "batch_size")) p->batch_size = v->i;
        else p->epochs = v->i;
    } else if (!strcmp(k, "max_data_bytes")) {
        if (v->i < 1) return "expected a number of bytes >= 1";
        p->max_data_bytes = (uint64_t)v->i;
    } else if (!strcmp(k, "seed")) {
        if (v->i < 0) return "expected an integer >= 0";
        p->seed = (uint64_t)v->i;
    } else if (!strcmp(k, "nesterov")) p->nesterov = v->b;
    else if (!strcmp(k, "amsgrad")) p->amsgrad = v->b;
    else if (!strcmp(k, "normalize")) p->normalize = v->b;
    else if (!strcmp(k, "drop_last")) p->drop_last = v->b;
    else if (!strcmp(k, "allow_nonfinite")) p->allow_nonfinite = v->b;
    else if (!strcmp(k, "betas")) {
        if (!(v->betas[0] >= 0 && v->betas[0] < 1 && v->betas[1] >= 0 && v->betas[1] < 1))
            return "expected two numbers in [0, 1)";
        p->beta1 = v->betas[0];
        p->beta2 = v->betas[1];
    } else if (!strcmp(k, "input_shape")) {
        if (v->ndim < 1 || v->ndim > NNM_MAX_DIMS - 1) return "expected 1 to 7 dimensions";
        for (int32_t d = 0; d < v->ndim; d++)
            if (v->shape[d] < 1) return "expected dimensions >= 1";
        /* a product that wraps (to 0, say) would divide by zero later */
        int64_t numel;
        if (cli_shape_numel(v->ndim, v->shape, &numel) || numel > TRAIN_MAX_SAMPLE_NUMEL)
            return "the dimensions multiply to more than 2^40 values per sample";
        p->input_ndim = v->ndim;
        memcpy(p->input_shape, v->shape, sizeof p->input_shape);
    } else if (!strcmp(k, "device")) {
        if (cli_parse_device(v->s, &p->device))
            return "expected \"cpu\", \"cuda\" or \"cuda:N\"";
    } else if (!strcmp(k, "train_data") || !strcmp(k, "test_data")) {
        data_spec *d = k[1] == 'r' ? &p->train : &p->test;
        if (v->n_data < 1 || v->n_data > 2)
            return "expected [INPUTS.idx, TARGETS.idx] or [DATA.safetensors]";
        memset(d, 0, sizeof *d);
        if (!v->data[0][0] || data_path(d->inputs, sizeof d->inputs, base_dir, v->data[0]))
            return "bad file name";
        if (v->n_data == 2 &&
            (!v->data[1][0] || data_path(d->targets, sizeof d->targets, base_dir, v->data[1])))
            return "bad file name";
        d->set = 1;
    } else {
        return "unknown key";
    }
    return NULL;
}

#define FASHION "/usr/share/datasets/fashion-mnist/"

int train_params_init(train_params *p, const char *cmd, const char *manifest_path,
                      const nnm_manifest *mf) {
    memset(p, 0, sizeof *p);
    strcpy(p->optimizer, "sgd");
    p->lr = -1;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->eps = 1e-8;
    p->weight_decay = -1;
    strcpy(p->schedule, "none");
    p->step_size = 1;
    p->gamma = 0.1;
    p->batch_size = 64;
    p->epochs = 1;
    strcpy(p->loss, "cross_entropy");
    strcpy(p->inputs_name, NNM_DATASET_INPUTS);
    strcpy(p->targets_name, NNM_DATASET_TARGETS);
    p->normalize = 1;
    p->device = (nnm_device){NNM_DEVICE_CPU, 0};
    /* Fashion-MNIST as Debian's dataset-fashion-mnist installs it */
    strcpy(p->train.inputs, FASHION "train-images-idx3-ubyte.gz");
    strcpy(p->train.targets, FASHION "train-labels-idx1-ubyte.gz");
    strcpy(p->test.inputs, FASHION "t10k-images-idx3-ubyte.gz");
    strcpy(p->test.targets, FASHION "t10k-labels-idx1-ubyte.gz");
    const nnm_config *cfg = nnm_manifest_training(mf);
    if (!cfg) return 0;
    char base[TRAIN_MAX_PATH];
    copy_str(base, sizeof base, manifest_path ? manifest_path : "");
    char *slash = strrchr(base, '/');
    if (slash) *slash = '\0';
    else strcpy(base, "");
    for (size_t i = 0; i < nnm_config_count(cfg); i++) {
        int type = 0;
        const char *k = nnm_config_key(cfg, i, &type);
        int ki = find_key(k);
        value v;
        memset(&v, 0, sizeof v);
        const char *why = NULL;
        if (ki < 0) {
            why = "unknown key (see docs/training.md)";
        } else {
            int ok = 0;
            switch (keys[ki].kind) {
            case K_STR:
            case K_DEVICE: ok = nnm_config_get_str(cfg, k, &v.s) == NNM_OK; break;
            case K_FLOAT: ok = nnm_config_get_float(cfg, k, &v.f) == NNM_OK; break;
            case K_INT: ok = nnm_config_get_int(cfg, k, &v.i) == NNM_OK; break;
            case K_BOOL: ok = nnm_config_get_bool(cfg, k, &v.b) == NNM_OK; break;
            case K_BETAS: {
                const double *f = NULL;
                size_t n = 0;
                ok = nnm_config_get_floats(cfg, k, &f, &n) == NNM_OK && n == 2;
                if (ok) v.betas[0] = f[0], v.betas[1] = f[1];
            } break;
            case K_SHAPE: {
                const int64_t *s = NULL;
                size_t n = 0;
                ok = nnm_config_get_ints(cfg, k, &s, &n) == NNM_OK && n >= 1 && n < NNM_MAX_DIMS;
                if (ok) {
                    v.ndim = (int32_t)n;
                    memcpy(v.shape, s, n * sizeof *s);
                }
            } break;
            case K_DATA: {
                const char *const *s = NULL;
                size_t n = 0;
                ok = nnm_config_get_strs(cfg, k, &s, &n) == NNM_OK && n >= 1 && n <= 2;
                if (ok) {
                    v.n_data = n;
                    v.data[0] = s[0];
                    v.data[1] = n > 1 ? s[1] : NULL;
                }
            } break;
            }
            static const char *const expect[] = {
                [K_STR] = "expected a string", [K_FLOAT] = "expected a number",
                [K_INT] = "expected an integer", [K_BOOL] = "expected true or false",
                [K_BETAS] = "expected a list of two numbers",
                [K_SHAPE] = "expected a list of 1 to 7 integers",
                [K_DATA] = "expected a list of one or two file names",
                [K_DEVICE] = "expected a string (\"cpu\", \"cuda\", \"cuda:N\")"};
            why = ok ? set_value(p, k, &v, base) : expect[keys[ki].kind];
        }
        if (why) return cli_failf(cmd, "%s: training.%s: %s", manifest_path, k, why);
    }
    return 0;
}

/* Flags: --key-with-dashes. Bools take no value (and --no-normalize). */
static cli_opt flag_opts[N_KEYS + 2];
static char flag_names[N_KEYS][32];

const cli_opt *train_params_opts(int first, size_t *n) {
    for (size_t i = 0; i < N_KEYS; i++) {
        snprintf(flag_names[i], sizeof flag_names[i], "%s", keys[i].key);
        for (char *c = flag_names[i]; *c; c++)
            if (*c == '_') *c = '-';
        /* the data flags read better short */
        if (!strcmp(keys[i].key, "train_data")) strcpy(flag_names[i], "train");
        if (!strcmp(keys[i].key, "test_data")) strcpy(flag_names[i], "test");
        if (!strcmp(keys[i].key, "lr_schedule")) strcpy(flag_names[i], "schedule");
        flag_opts[i] = (cli_opt){flag_names[i], 0, keys[i].kind != K_BOOL, first + (int)i};
    }
    flag_opts[N_KEYS] = (cli_opt){"no-normalize", 0, 0, first + (int)N_KEYS};
    flag_opts[N_KEYS + 1] = (cli_opt){NULL, 0, 0, 0};
    *n = N_KEYS + 1;
    return flag_opts;
}

int train_params_flag(train_params *p, const char *cmd, const char *name, const char *arg) {
    if (!strcmp(name, "no-normalize")) {
        p->normalize = 0;
        return 0;
    }
    int ki = -1;
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(flag_names[i], name)) ki = (int)i;
    if (ki < 0) return -1;
    const char *k = keys[ki].key;
    value v;
    memset(&v, 0, sizeof v);
    char buf[2 * TRAIN_MAX_PATH];
    uint64_t u;
    switch (keys[ki].kind) {
    case K_STR:
    case K_DEVICE: v.s = arg; break;
    case K_FLOAT:
        if (cli_parse_double(arg, &v.f)) return cli_usage(cmd, "--%s: expected a number, got '%s'", name, arg);
        break;
    case K_INT:
        if (cli_parse_u64(arg, &u) || u > INT64_MAX)
            return cli_usage(cmd, "--%s: expected an integer, got '%s'", name, arg);
        v.i = (int64_t)u;
        break;
    case K_BOOL: v.b = 1; break;
    case K_BETAS: {
        char *end = NULL;
        v.betas[0] = strtod(arg, &end);
        if (!end || *end != ',' || cli_parse_double(end + 1, &v.betas[1]))
            return cli_usage(cmd, "--%s: expected B1,B2, got '%s'", name, arg);
    } break;
    case K_SHAPE: {
        int n = cli_parse_shape(arg, v.shape);
        if (n < 0) return cli_usage(cmd, "--%s: bad shape '%s' (e.g. 1x28x28)", name, arg);
        v.ndim = n;
    } break;
    case K_DATA:
        if (copy_str(buf, sizeof buf, arg)) return cli_usage(cmd, "--%s: file name too long", name);
        v.data[0] = buf;
        v.n_data = 1;
        char *comma = strchr(buf, ',');
        if (comma) {
            *comma = '\0';
            v.data[1] = comma + 1;
            v.n_data = 2;
        }
        break;
    }
    const char *why = set_value(p, k, &v, NULL);
    if (why) return cli_usage(cmd, "--%s: %s, got '%s'", name, why, arg ? arg : "");
    return 0;
}

void train_params_usage(FILE *f) {
    fputs("training settings (override the manifest's \"training\" section):\n"
          "  --train FILE[,FILE]   training data: INPUTS.idx[.gz],TARGETS.idx[.gz] or one\n"
          "                        .safetensors file (default: Fashion-MNIST)\n"
          "  --test FILE[,FILE]    test data, the same way\n"
          "  --inputs-name N, --targets-name N\n"
          "                        tensor names in a safetensors dataset (inputs, targets)\n"
          "  --input-shape SHAPE   view each sample as SHAPE (784, 1x28x28, ...)\n"
          "  --optimizer NAME      sgd (default), adam or adamw\n"
          "  --lr X                learning rate (sgd 0.01, adam/adamw 0.001)\n"
          "  --momentum X, --dampening X, --nesterov           (sgd)\n"
          "  --betas B1,B2, --eps X, --amsgrad                 (adam, adamw)\n"
          "  --weight-decay X      (sgd/adam 0, adamw 0.01)\n"
          "  --schedule NAME       none (default), step or cosine (per epoch)\n"
          "  --step-size N, --gamma X   step: lr *= gamma every N epochs\n"
          "  --min-lr X            cosine: the final learning rate (0)\n"
          "  --batch-size N        (64)\n"
          "  --drop-last           skip each epoch's last partial training batch\n"
          "  --epochs N            (1)\n"
          "  --loss NAME           cross_entropy (default), nll_loss, mse_loss,\n"
          "                        l1_loss, smooth_l1_loss, huber_loss, bce_with_logits\n"
          "  --label-smoothing X   cross_entropy\n"
          "  --seed N              parameters, shuffling and dropout (0)\n"
          "  --mean X, --std X     normalisation (default: computed on the training data)\n"
          "  --scale X             applied first (default 1/255 for u8 data, else 1)\n"
          "  --no-normalize        only the scale\n"
          "  --max-data-bytes N    the most bytes a dataset may hold (4 GiB), checked on\n"
          "                        the files' headers before anything is read\n"
          "  --allow-nonfinite     keep NaN and infinite inputs and f32 targets (refused\n"
          "                        by default, naming the file and the sample)\n"
          "  --device DEV          cpu (default), cuda or cuda:N: the model, its optimizer\n"
          "                        state and every batch live there (docs/gpu.md)\n",
          f);
}

/* ---- data ---------------------------------------------------------------- */

nnm_dataset_options train_dataset_options(const train_params *p) {
    nnm_dataset_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = p->allow_nonfinite ? NNM_DATASET_ALLOW_NONFINITE : 0u;
    o.max_bytes = p->max_data_bytes; /* 0: the library's default */
    o.inputs_name = p->inputs_name;
    o.targets_name = p->targets_name;
    return o;
}

int train_open_data(nnm_ctx *ctx, const char *cmd, const train_params *p, const data_spec *d,
                    nnm_dataset **out) {
    nnm_status s;
    nnm_dataset_options o = train_dataset_options(p);
    if (d->targets[0])
        s = nnm_dataset_open_idx_v2(ctx, d->inputs, d->targets, &o, out);
    else
        s = nnm_dataset_open_safetensors_v2(ctx, d->inputs, &o, out);
    return s == NNM_OK ? 0 : cli_fail(cmd, ctx, s);
}

nnm_loader_options train_loader_options(const train_params *p, int shuffle) {
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    /* drop_last, as DataLoader's, for the training (shuffled) loader only:
     * evaluation always sees every sample */
    o.flags = shuffle ? NNM_LOADER_SHUFFLE | (p->drop_last ? NNM_LOADER_DROP_LAST : 0u) : 0u;
    o.batch_size = p->batch_size;
    o.seed = p->seed;
    o.scale = p->scale;
    if (p->normalize) {
        o.mean = p->mean;
        o.std = p->std;
    }
    o.ndim = p->input_ndim;
    memcpy(o.shape, p->input_shape, sizeof o.shape);
    return o;
}

int train_fill_stats(nnm_ctx *ctx, const char *cmd, train_params *p, const nnm_dataset *ds) {
    nnm_dataset_info info = {sizeof info};
    nnm_dataset_info_get(ds, &info);
    double scale = p->scale;
    if (scale == 0)
        scale = info.input_dtype.code == NNM_DTYPE_UINT && info.input_dtype.bits == 8 ? 1.0 / 255 : 1.0;
    const char *why;
    if (!p->normalize || (p->have_mean && p->have_std)) {
        p->scale = scale;
        if ((why = train_transform_check(scale, p->normalize ? p->mean : 0,
                                         p->normalize ? p->std : 1)))
            return cli_failf(cmd, "--scale %g, --mean %g, --std %g (or training.scale, mean, "
                             "std): %s", scale, p->mean, p->std, why);
        return 0;
    }
    p->scale = scale; /* resolved, so checkpoints record what was applied */
    double m, s;
    nnm_status st = nnm_dataset_stats(ds, scale, &m, &s);
    if (st) return cli_fail(cmd, ctx, st);
    if (!p->have_mean) p->mean = m;
    if (!p->have_std) p->std = s > 0 ? s : 1.0;
    if ((why = train_transform_check(scale, p->mean, p->std)))
        return cli_failf(cmd, "the normalisation of %s: scale %g, mean %g, std %g: %s (give "
                         "--mean and --std, or --no-normalize)",
                         info.source, scale, p->mean, p->std, why);
    p->have_mean = p->have_std = 1;
    return 0;
}

/* ---- the device ------------------------------------------------------------ */

int train_model_to_device(nnm_ctx *ctx, const char *cmd, const train_params *p,
                          nnm_module *model) {
    nnm_device cur = nnm_module_device(model);
    if (cur.type == p->device.type && cur.id == p->device.id) return 0;
    nnm_status s = nnm_module_to(model, p->device);
    if (!s) return 0;
    char dv[32];
    const char *msg = nnm_ctx_errmsg(ctx);
    return cli_failf(cmd, "--device %s: %s", cli_device_str(p->device, dv, sizeof dv),
                     msg && msg[0] ? msg : nnm_status_str(s));
}

nnm_status train_to_device(nnm_device dev, nnm_tensor *t, nnm_tensor **out) {
    *out = NULL;
    if (!t) return NNM_E_INVALID;
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    if (d->device.type == dev.type && d->device.id == dev.id) {
        nnm_tensor_retain(t);
        *out = t;
        return NNM_OK;
    }
    return nnm_tensor_to(t, dev, out);
}

/* Replaces *t by its copy on dev (nothing when it is there already). */
static nnm_status move_batch(nnm_device dev, nnm_tensor **t) {
    nnm_tensor *o = NULL;
    nnm_status s = train_to_device(dev, *t, &o);
    if (s) return s;
    nnm_tensor_release(*t);
    *t = o;
    return NNM_OK;
}

/* ---- the loss and the fit check ------------------------------------------ */

int train_make_loss(nnm_ctx *ctx, const char *cmd, const train_params *p, nnm_module **out) {
    nnm_config *cfg = NULL;
    if (nnm_config_new(&cfg)) return cli_failf(cmd, "out of memory");
    if (p->label_smoothing > 0 && !strcmp(p->loss, "cross_entropy"))
        nnm_config_set_float(cfg, "label_smoothing", p->label_smoothing);
    nnm_status s = nnm_module_create(ctx, p->loss, cfg, out);
    nnm_config_free(cfg);
    return s == NNM_OK ? 0 : cli_fail(cmd, ctx, s);
}

static int class_loss(const char *loss) {
    return !strcmp(loss, "cross_entropy") || !strcmp(loss, "nll_loss");
}

int train_check_fit(nnm_ctx *ctx, const char *cmd, const train_params *p, nnm_module *model,
                    nnm_module *loss, nnm_dataset *ds, const char *split, int64_t *n_out_classes) {
    nnm_dataset_info info = {sizeof info};
    nnm_dataset_info_get(ds, &info);
    char ts[128], os[128];
    cli_shape_str(info.target_ndim, info.target_shape, ts, sizeof ts);
    int int_targets = info.target_dtype.code == NNM_DTYPE_INT;
    *n_out_classes = 0;
    nnm_loader_options o = train_loader_options(p, 0);
    o.batch_size = 2;
    nnm_loader *ld = NULL;
    nnm_tensor *x = NULL, *y = NULL, *out = NULL, *l = NULL;
    int r = 1;
    const nnm_device dev = nnm_module_device(model);
    nnm_status s = nnm_loader_new(ds, &o, &ld);
    if (!s) s = nnm_loader_next(ld, &x, &y);
    if (!s) s = move_batch(dev, &x);
    if (!s) s = move_batch(dev, &y); /* read on the host nowhere below */
    if (s) {
        r = cli_fail(cmd, ctx, s);
        goto done;
    }
    nnm_module_train(model, 0);
    int was = nnm_grad_set_enabled(0);
    s = nnm_module_call(model, &x, 1, &out, 1);
    if (s) {
        nnm_grad_set_enabled(was);
        char xs[128];
        const nnm_tensor_desc *d = nnm_tensor_desc_get(x);
        cli_shape_str(d->ndim - 1, d->shape + 1, xs, sizeof xs);
        r = cli_failf(cmd, "the model does not take the %s inputs of %s (samples of shape %s): %s",
                      split, info.source, xs, nnm_ctx_errmsg(ctx));
        goto done;
    }
    const nnm_tensor_desc *od = nnm_tensor_desc_get(out);
    cli_shape_str(od->ndim > 0 ? od->ndim - 1 : 0, od->shape + 1, os, sizeof os);
    if (class_loss(p->loss) && !int_targets) {
        nnm_grad_set_enabled(was);
        r = cli_failf(cmd,
                      "%s needs class indices as targets and the model's output has shape %s "
                      "per sample, but the %s targets of %s are f32 values of shape %s per sample",
                      p->loss, os, split, info.source, ts);
        goto done;
    }
    if (class_loss(p->loss) && info.target_ndim != 0) {
        nnm_grad_set_enabled(was);
        r = cli_failf(cmd,
                      "%s needs one class index per sample, but the %s targets of %s have "
                      "shape %s per sample",
                      p->loss, split, info.source, ts);
        goto done;
    }
    if (!class_loss(p->loss) && int_targets) {
        nnm_grad_set_enabled(was);
        r = cli_failf(cmd,
                      "%s needs f32 targets of the output's shape, %s per sample, but the %s "
                      "targets of %s are class indices (%" PRId64 " classes)",
                      p->loss, os, split, info.source, info.n_classes);
        goto done;
    }
    if (int_targets) {
        if (od->ndim != 2 || od->shape[1] < info.n_classes) {
            nnm_grad_set_enabled(was);
            r = cli_failf(cmd,
                          "the model's output has shape %s per sample, but the %s targets of %s "
                          "are class indices 0 to %" PRId64 " (%" PRId64 " classes): the output "
                          "needs at least %" PRId64 " values per sample",
                          os, split, info.source, info.n_classes - 1, info.n_classes,
                          info.n_classes);
            goto done;
        }
        *n_out_classes = od->shape[1];
    } else {
        int same = od->ndim == info.target_ndim + 1;
        for (int32_t dd = 0; same && dd < info.target_ndim; dd++)
            same = od->shape[dd + 1] == info.target_shape[dd];
        if (!same) {
            nnm_grad_set_enabled(was);
            r = cli_failf(cmd,
                          "the model's output has shape %s per sample, but the %s targets of %s "
                          "have shape %s: %s needs them equal",
                          os, split, info.source, ts, p->loss);
            goto done;
        }
    }
    nnm_tensor *in2[2] = {out, y};
    s = nnm_module_call(loss, in2, 2, &l, 1);
    nnm_grad_set_enabled(was);
    if (s) {
        r = cli_failf(cmd, "%s does not take the model's output %s and the %s targets %s: %s",
                      p->loss, os, split, ts, nnm_ctx_errmsg(ctx));
        goto done;
    }
    r = 0;
done:
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(out);
    nnm_tensor_release(l);
    nnm_loader_free(ld);
    return r;
}

/* ---- evaluation ---------------------------------------------------------- */

int64_t train_argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int train_evaluate(nnm_ctx *ctx, const char *cmd, nnm_module *model, nnm_module *loss,
                   nnm_loader *ld, int64_t classes, int64_t *confusion, eval_result *r) {
    int was_training = nnm_module_is_training(model);
    int was = nnm_grad_set_enabled(0);
    nnm_module_train(model, 0);
    nnm_loader_set_epoch(ld, 0);
    double loss_sum = 0;
    int64_t n = 0, n_counted = 0, correct = 0;
    float *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    const nnm_device dev = nnm_module_device(model);
    for (;;) {
        nnm_tensor *x = NULL, *y = NULL, *yd = NULL, *out = NULL, *l = NULL;
        nnm_status s = nnm_loader_next(ld, &x, &y);
        if (!s && !x) break;
        /* y stays on the host (the accuracy reads it there); the loss gets yd */
        if (!s) s = move_batch(dev, &x);
        if (!s) s = train_to_device(dev, y, &yd);
        if (!s) s = nnm_module_call(model, &x, 1, &out, 1);
        nnm_tensor *in2[2] = {out, yd};
        if (!s) s = nnm_module_call(loss, in2, 2, &l, 1);
        float lv = 0;
        if (!s) s = nnm_tensor_to_f32(l, &lv, 1);
        if (s) {
            rc = cli_fail(cmd, ctx, s);
        } else {
            int64_t b = nnm_tensor_desc_get(x)->shape[0], counted = b;
            if (classes > 0) { /* ignored targets are in neither the loss's mean nor here */
                const int64_t *t = nnm_tensor_desc_get(y)->data;
                for (int64_t i = 0; i < b; i++) counted -= t[i] == TRAIN_IGNORE_INDEX;
            }
            if (counted > 0) loss_sum += (double)lv * (double)counted; /* else lv is 0/0 */
            n += b;
            n_counted += counted;
            if (classes > 0) {
                size_t need = (size_t)b * (size_t)classes;
                if (need > cap) {
                    float *nb = realloc(buf, need * sizeof *nb);
                    if (!nb) rc = cli_failf(cmd, "out of memory");
                    else buf = nb, cap = need;
                }
                if (!rc && nnm_tensor_to_f32(out, buf, need) != NNM_OK)
                    rc = cli_fail(cmd, ctx, NNM_E_INVALID);
                const int64_t *t = nnm_tensor_desc_get(y)->data;
                for (int64_t i = 0; !rc && i < b; i++) {
                    if (t[i] == TRAIN_IGNORE_INDEX) continue;
                    int64_t pred = train_argmax(buf + i * classes, classes);
                    correct += pred == t[i];
                    if (confusion && t[i] >= 0 && t[i] < classes)
                        confusion[t[i] * classes + pred]++;
                }
            }
        }
        nnm_tensor_release(x);
        nnm_tensor_release(y);
        nnm_tensor_release(yd);
        nnm_tensor_release(out);
        nnm_tensor_release(l);
        if (rc) break;
    }
    free(buf);
    nnm_grad_set_enabled(was);
    nnm_module_train(model, was_training);
    r->samples = n;
    r->ignored = n - n_counted;
    r->loss = n_counted ? loss_sum / (double)n_counted : 0;
    r->accuracy = classes > 0 && n_counted ? (double)correct / (double)n_counted : -1;
    if (!rc && classes > 0 && n > 0 && !n_counted)
        rc = cli_failf(cmd, "every one of the %" PRId64 " evaluated samples has target %d "
                       "(ignored): there is no accuracy to compute", n, TRAIN_IGNORE_INDEX);
    return rc;
}

const char *train_transform_check(double scale, double mean, double std) {
    if (!(isfinite(scale) && scale > 0)) return "the scale must be a finite number > 0";
    if (!isfinite(mean)) return "the mean must be finite";
    if (!(isfinite(std) && std > 0)) return "the std must be a finite number > 0";
    /* (x * scale - mean) / std in f32: coefficients past 1e12 turn every
     * input into an infinity or noise (a std of 1e-300 from a corrupt file) */
    if (scale / std > TRAIN_MAX_COEF || fabs(mean) / std > TRAIN_MAX_COEF)
        return "scale / std and |mean| / std must be at most 1e12";
    return NULL;
}

int train_params_from_weights(nnm_ctx *ctx, const char *cmd, train_params *p, const char *path) {
    nnm_safetensors *st = NULL;
    nnm_status s = nnm_safetensors_open(ctx, path, &st);
    if (s) return cli_fail(cmd, ctx, s);
    double v[3] = {0, 0, 0};
    int have = 0, r = 0;
    static const char *const names[3] = {"input_scale", "input_mean", "input_std"};
    for (uint32_t i = 0; !r && i < nnm_safetensors_metadata_count(st); i++) {
        const char *k = NULL, *val = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &val) != NNM_OK) continue;
        for (int j = 0; !r && j < 3; j++) {
            if (strcmp(k, names[j])) continue;
            if (cli_parse_double(val, &v[j]))
                r = cli_failf(cmd, "%s: metadata '%s' is '%.40s': expected a finite number", path,
                              k, val);
            have |= 1 << j;
        }
    }
    nnm_safetensors_close(st);
    if (r) return r;
    if (have == 0) return 0; /* a plain state dict: no recorded transform */
    for (int j = 0; j < 3; j++)
        if (!(have & (1 << j)))
            return cli_failf(cmd, "%s: metadata has %s but no '%s': the input transform is "
                             "incomplete", path, names[(j + 1) % 3], names[j]);
    const char *why = train_transform_check(v[0], v[1], v[2]);
    if (why)
        return cli_failf(cmd, "%s: metadata input_scale %g, input_mean %g, input_std %g: %s",
                         path, v[0], v[1], v[2], why);
    p->scale = v[0];
    p->mean = v[1];
    p->std = v[2];
    p->normalize = p->have_mean = p->have_std = 1;
    return 0;
}
