/* nnmod/version.h - library and ABI version numbers.
 *
 * The library version (NNM_VERSION_*) follows semantic versioning of the
 * application API in nnmod.h. The ABI version (NNM_ABI_*) is the version of the
 * plugin contract in plugin.h: a plugin built against ABI major M loads in any
 * runtime of major M; minors only ever add slots at the end of structs.
 */
#ifndef NNMOD_VERSION_H
#define NNMOD_VERSION_H

#define NNM_VERSION_MAJOR 0
#define NNM_VERSION_MINOR 4
#define NNM_VERSION_PATCH 0
#define NNM_VERSION_STRING "0.4.0"

/* The plugin ABI this header set describes. */
#define NNM_ABI_MAJOR 1
#define NNM_ABI_MINOR 5

#endif /* NNMOD_VERSION_H */
