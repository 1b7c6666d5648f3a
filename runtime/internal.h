/* runtime/internal.h - the runtime's private structures (nnm__ names).
 *
 * Objects: a context owns the plugin registry, the backends, the caching
 * allocator, the global hooks and the error message. Modules, tensors and
 * storages each hold one reference on their context, so a context outlives
 * everything made from it even after nnm_ctx_free.
 */
#ifndef NNM_RUNTIME_INTERNAL_H
#define NNM_RUNTIME_INTERNAL_H

/* One header per concern, next to its code; this one includes them all for
 * the runtime's sources. A new declaration goes into its folder's header. */
#include "core/core_internal.h"
#include "module/hooks_internal.h"
#include "core/ctx_internal.h"
#include "module/module_internal.h"
#include "autograd/autograd_internal.h"
#include "autograd/optim_internal.h"
#include "core/ops_internal.h"
#include "state/state_internal.h"
#include "dist/dist_internal.h"

#endif /* NNM_RUNTIME_INTERNAL_H */
