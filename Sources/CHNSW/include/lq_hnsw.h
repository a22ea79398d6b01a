// hnswlib (header-only C++) behind a C interface for Swift: an HNSW graph over inner-product
// distance (1 - dot), labels chosen by the caller. Every call that can fail writes hnswlib's
// message into `error` (`error_size` bytes) and returns NULL or -1.
#ifndef LQ_HNSW_H
#define LQ_HNSW_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lq_hnsw lq_hnsw;

/// An empty index for `capacity` vectors of `dimension` floats; `m` links per node, `ef_construction`
/// candidates while inserting, `seed` for the random levels (so one insertion order gives one graph).
lq_hnsw *lq_hnsw_create(int32_t dimension, size_t capacity, size_t m, size_t ef_construction, size_t seed,
                        char *error, size_t error_size);
/// Inserts a vector under `label` (single-threaded: hnswlib's parallel inserts depend on timing).
int lq_hnsw_add(lq_hnsw *index, const float *vector, uint64_t label, char *error, size_t error_size);
/// hnswlib's own file format.
int lq_hnsw_save(const lq_hnsw *index, const char *path, char *error, size_t error_size);
/// Reads a saved index, refusing one whose vectors are not `dimension` floats.
lq_hnsw *lq_hnsw_load(const char *path, int32_t dimension, char *error, size_t error_size);
/// Candidates kept while searching (at least k is used).
void lq_hnsw_set_ef(lq_hnsw *index, size_t ef);
size_t lq_hnsw_count(const lq_hnsw *index);
/// The k nearest to `query`, nearest first: their labels and distances (1 - dot); returns how many
/// were found (fewer than k when the index is smaller).
int32_t lq_hnsw_search(const lq_hnsw *index, const float *query, int32_t k, uint64_t *labels, float *distances,
                       char *error, size_t error_size);
void lq_hnsw_free(lq_hnsw *index);

#ifdef __cplusplus
}
#endif
#endif
