/* runtime/dist/dist_internal.h - communicators, as the DDP reducer sees them.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_DIST_INTERNAL_H
#define NNM_DIST_INTERNAL_H

#include "../core/core_internal.h"

/* dist/comm.c - for the DDP reducer. */
nnm_ctx *nnm__comm_ctx(const nnm_comm *c);
void nnm__comm_retain(nnm_comm *c);

#endif /* NNM_DIST_INTERNAL_H */
