// The only translation unit that includes hnswlib (its header defines non-inline functions).
#include "lq_hnsw.h"
#include <hnswlib/hnswlib.h>
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

struct lq_hnsw {
    // The space holds the distance function and dimension the index points to: it lives as long.
    std::unique_ptr<hnswlib::InnerProductSpace> space;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;
};

namespace {
void report(const std::exception &e, char *error, size_t size) {
    if (size == 0) return;
    std::strncpy(error, e.what(), size - 1);
    error[size - 1] = '\0';
}
}  // namespace

extern "C" {

lq_hnsw *lq_hnsw_create(int32_t dimension, size_t capacity, size_t m, size_t ef_construction, size_t seed,
                        char *error, size_t error_size) {
    try {
        auto index = std::make_unique<lq_hnsw>();
        index->space = std::make_unique<hnswlib::InnerProductSpace>(size_t(dimension));
        index->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(index->space.get(), std::max<size_t>(capacity, 1), m,
                                                                         ef_construction, seed);
        return index.release();
    } catch (const std::exception &e) {
        report(e, error, error_size);
        return nullptr;
    }
}

int lq_hnsw_add(lq_hnsw *index, const float *vector, uint64_t label, char *error, size_t error_size) {
    try {
        index->graph->addPoint(vector, hnswlib::labeltype(label));
        return 0;
    } catch (const std::exception &e) {
        report(e, error, error_size);
        return -1;
    }
}

int lq_hnsw_save(const lq_hnsw *index, const char *path, char *error, size_t error_size) {
    try {
        index->graph->saveIndex(path);
        return 0;
    } catch (const std::exception &e) {
        report(e, error, error_size);
        return -1;
    }
}

lq_hnsw *lq_hnsw_load(const char *path, int32_t dimension, char *error, size_t error_size) {
    try {
        auto index = std::make_unique<lq_hnsw>();
        index->space = std::make_unique<hnswlib::InnerProductSpace>(size_t(dimension));
        index->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(index->space.get(), std::string(path));
        // The file records each element's layout, not the space: its vector bytes sit between the
        // links and the label.
        size_t stored = index->graph->label_offset_ - index->graph->offsetData_;
        if (stored != size_t(dimension) * sizeof(float)) {
            throw std::runtime_error("the index holds vectors of " + std::to_string(stored / sizeof(float)) + " floats, not " +
                                     std::to_string(dimension));
        }
        return index.release();
    } catch (const std::exception &e) {
        report(e, error, error_size);
        return nullptr;
    }
}

void lq_hnsw_set_ef(lq_hnsw *index, size_t ef) { index->graph->setEf(ef); }

size_t lq_hnsw_count(const lq_hnsw *index) { return index->graph->cur_element_count; }

int32_t lq_hnsw_search(const lq_hnsw *index, const float *query, int32_t k, uint64_t *labels, float *distances,
                       char *error, size_t error_size) {
    try {
        auto found = index->graph->searchKnn(query, size_t(k));
        // A max-heap on distance: popping gives the farthest first.
        int32_t n = int32_t(found.size());
        for (int32_t i = n - 1; i >= 0; i--) {
            distances[i] = found.top().first;
            labels[i] = uint64_t(found.top().second);
            found.pop();
        }
        return n;
    } catch (const std::exception &e) {
        report(e, error, error_size);
        return -1;
    }
}

void lq_hnsw_free(lq_hnsw *index) { delete index; }

}  // extern "C"
