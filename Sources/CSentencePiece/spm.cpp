#include "lq_spm.h"
#include <sentencepiece_processor.h>
#include <cstring>
#include <memory>
#include <string>

struct lq_spm {
    sentencepiece::SentencePieceProcessor processor;
};

extern "C" {

lq_spm *lq_spm_open(const char *path, char *error, size_t error_size) {
    auto model = std::make_unique<lq_spm>();
    const auto status = model->processor.Load(path);
    if (!status.ok()) {
        if (error_size > 0) {
            std::strncpy(error, status.ToString().c_str(), error_size - 1);
            error[error_size - 1] = '\0';
        }
        return nullptr;
    }
    return model.release();
}

void lq_spm_close(lq_spm *model) { delete model; }

int32_t lq_spm_count(const lq_spm *model) { return model->processor.GetPieceSize(); }

const char *lq_spm_piece(const lq_spm *model, int32_t id, size_t *length) {
    const std::string &piece = model->processor.IdToPiece(id);
    *length = piece.size();
    return piece.data();
}

float lq_spm_score(const lq_spm *model, int32_t id) { return model->processor.GetScore(id); }

int32_t lq_spm_type(const lq_spm *model, int32_t id) {
    const auto &p = model->processor;
    if (p.IsUnknown(id)) return LQ_SPM_UNKNOWN;
    if (p.IsControl(id)) return LQ_SPM_CONTROL;
    if (p.IsUnused(id)) return LQ_SPM_UNUSED;
    if (p.IsByte(id)) return LQ_SPM_BYTE;
    return LQ_SPM_NORMAL;
}

}  // extern "C"
