// hnswlib (through lqlora's own shim, Sources/CHNSW) against FAISS (Debian libfaiss-dev: IndexHNSWFlat
// and IndexIVFFlat) on the vectors of an `lqlora rag index` database: recall@10 against exact search in
// double precision, query latency (one query at a time, one thread, as `rag ask` searches), build time.
// Every 20th passage is a query and left out of the base. Built and run by scripts/bench-ann.sh.
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <omp.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "lq_hnsw.h"

using Clock = std::chrono::steady_clock;
static double ms(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); }
static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench-ann DB [ROUNDS]\n");
        return 2;
    }
    int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
    omp_set_num_threads(1);
    sqlite3 *db;
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        std::fprintf(stderr, "%s: %s\n", argv[1], sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT vector FROM passages ORDER BY id", -1, &st, nullptr);
    std::vector<float> base, queries;
    int d = 0, row = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int bytes = sqlite3_column_bytes(st, 0);
        d = bytes / 4;
        const float *v = (const float *)sqlite3_column_blob(st, 0);
        auto &into = row++ % 20 == 0 ? queries : base;
        into.insert(into.end(), v, v + d);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    const int nb = int(base.size() / d), nq = int(queries.size() / d), k = 10;
    std::printf("%d base vectors, %d queries, %d dimensions; one thread\n", nb, nq, d);

    // Exact neighbours in double precision; a found vector counts when its inner product reaches the
    // 10th best (within 1e-6), since WikiText repeats some passages (section headings) exactly.
    std::vector<std::vector<double>> dots(nq, std::vector<double>(nb));
    std::vector<double> kth(nq);
    for (int q = 0; q < nq; q++) {
        std::vector<std::pair<double, int>> s(nb);
        for (int i = 0; i < nb; i++) {
            double dot = 0;
            for (int j = 0; j < d; j++) dot += double(queries[q * d + j]) * base[i * d + j];
            s[i] = {-dot, i};
            dots[q][i] = dot;
        }
        std::partial_sort(s.begin(), s.begin() + k, s.end());
        kth[q] = -s[k - 1].first;
    }
    auto recall = [&](const std::vector<std::vector<int>> &found) {
        double r = 0;
        for (int q = 0; q < nq; q++)
            for (int id : found[q]) r += id >= 0 && dots[q][id] >= kth[q] - 1e-6;
        return r / (double(nq) * k);
    };

    struct Method {
        std::string name;
        std::function<void(const float *, int64_t *)> search;  // one query's k labels
        double build_ms;
        std::vector<double> times;  // per round, the median over queries
        double recall = 0;
    };
    std::vector<Method> methods;
    char error[256];

    auto t0 = Clock::now();
    lq_hnsw *h = lq_hnsw_create(d, nb, 16, 200, 100, error, sizeof error);
    for (int i = 0; i < nb; i++) lq_hnsw_add(h, &base[i * d], uint64_t(i), error, sizeof error);
    double hnsw_build = ms(t0, Clock::now());
    for (int ef : {16, 32, 64, 128}) {
        methods.push_back({"hnswlib M16 efC200 ef" + std::to_string(ef), [h, ef, error](const float *q, int64_t *out) mutable {
                               uint64_t labels[10];
                               float dist[10];
                               lq_hnsw_set_ef(h, ef);
                               lq_hnsw_search(h, q, 10, labels, dist, error, sizeof error);
                               for (int j = 0; j < 10; j++) out[j] = int64_t(labels[j]);
                           }, hnsw_build, {}});
    }

    t0 = Clock::now();
    auto *fh = new faiss::IndexHNSWFlat(d, 16, faiss::METRIC_INNER_PRODUCT);
    fh->hnsw.efConstruction = 200;
    fh->add(nb, base.data());
    double faiss_hnsw_build = ms(t0, Clock::now());
    for (int ef : {16, 32, 64, 128}) {
        methods.push_back({"faiss HNSWFlat M16 efC200 ef" + std::to_string(ef), [fh, ef](const float *q, int64_t *out) {
                               fh->hnsw.efSearch = ef;  // 1.7.3 ignores SearchParametersHNSW here
                               float dist[10];
                               fh->search(1, q, 10, dist, out);
                           }, faiss_hnsw_build, {}});
    }

    t0 = Clock::now();
    auto *quantizer = new faiss::IndexFlatIP(d);
    auto *ivf = new faiss::IndexIVFFlat(quantizer, d, 100, faiss::METRIC_INNER_PRODUCT);
    ivf->train(nb, base.data());
    ivf->add(nb, base.data());
    double ivf_build = ms(t0, Clock::now());
    for (int probe : {4, 8, 16}) {
        methods.push_back({"faiss IVFFlat 100 lists nprobe" + std::to_string(probe), [ivf, probe](const float *q, int64_t *out) {
                               ivf->nprobe = probe;
                               float dist[10];
                               ivf->search(1, q, 10, dist, out);
                           }, ivf_build, {}});
    }

    auto *flat = new faiss::IndexFlatIP(d);
    flat->add(nb, base.data());
    methods.push_back({"faiss FlatIP (exact)", [flat](const float *q, int64_t *out) {
                           float dist[10];
                           flat->search(1, q, 10, dist, out);
                       }, 0, {}});

    // Rounds interleave the methods, so load from other processes falls on all of them alike.
    for (int r = 0; r < rounds; r++) {
        for (auto &m : methods) {
            std::vector<double> per(nq);
            std::vector<std::vector<int>> found(nq);
            for (int q = 0; q < nq; q++) {
                int64_t out[10];
                auto a = Clock::now();
                m.search(&queries[q * d], out);
                per[q] = ms(a, Clock::now());
                found[q].assign(out, out + 10);
            }
            m.times.push_back(median(per));
            m.recall = recall(found);
        }
    }
    std::printf("%-36s %10s %16s %12s\n", "method", "recall@10", "query ms (med)", "build s");
    for (auto &m : methods) {
        std::printf("%-36s %10.4f %16.4f %12.2f\n", m.name.c_str(), m.recall, median(m.times), m.build_ms / 1000);
    }
    lq_hnsw_free(h);
    return 0;
}
