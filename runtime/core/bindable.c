/* runtime/core/bindable.c - what a binding needs that C gets from the headers:
 * constants by name, struct sizes, and a non-variadic error setter. */
#include <string.h>

#include "internal.h"

typedef struct {
    const char *name;
    int64_t value;
} constant_entry;

/* Generated from the headers at build time (cmake/nnm_constants.cmake), in
 * name order: names from the text, values from the compiler. */
static const constant_entry constants[] = {
#define NNM__CONSTANT(c) {#c, (int64_t)(c)},
#define NNM__STRUCT(s)
#include "nnm_constants_table.h"
#undef NNM__CONSTANT
#undef NNM__STRUCT
};

typedef struct {
    const char *name;
    size_t size;
} struct_entry;

static const struct_entry structs[] = {
#define NNM__CONSTANT(c)
#define NNM__STRUCT(s) {#s, sizeof(struct s)},
#include "nnm_constants_table.h"
#undef NNM__CONSTANT
#undef NNM__STRUCT
};

#define N_CONSTANTS (sizeof constants / sizeof constants[0])
#define N_STRUCTS (sizeof structs / sizeof structs[0])

NNM_API nnm_status nnm_constant(const char *name, int64_t *value) {
    if (!name || !value) return NNM_E_INVALID;
    size_t lo = 0, hi = N_CONSTANTS; /* binary search: the table is sorted */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, constants[mid].name);
        if (c == 0) {
            *value = constants[mid].value;
            return NNM_OK;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NNM_E_NOT_FOUND;
}

NNM_API uint32_t nnm_constant_count(void) { return (uint32_t)N_CONSTANTS; }

NNM_API const char *nnm_constant_at(uint32_t index, int64_t *value) {
    if (index >= N_CONSTANTS) return NULL;
    if (value) *value = constants[index].value;
    return constants[index].name;
}

NNM_API size_t nnm_struct_size(const char *name) {
    if (!name) return 0;
    for (size_t i = 0; i < N_STRUCTS; i++)
        if (strcmp(name, structs[i].name) == 0) return structs[i].size;
    return 0;
}

NNM_API nnm_status nnm_ctx_set_error_msg(nnm_ctx *ctx, nnm_status code, const char *msg) {
    if (!ctx) return code;
    return nnm__error(ctx, code, "%s", msg ? msg : "");
}
