// SentencePiece (Debian libsentencepiece-dev) behind a C interface for Swift: the pieces of a
// tokenizer.model with their scores and types, as llama.cpp's convert_hf_to_gguf.py reads them for a
// SentencePiece vocabulary. Every call that can fail writes the library's message into `error`
// (`error_size` bytes) and returns NULL or -1.
#ifndef LQ_SPM_H
#define LQ_SPM_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lq_spm lq_spm;

/// The piece types, numbered as gguf-py's TokenType (and llama.cpp's SentencePieceTokenTypes).
enum { LQ_SPM_NORMAL = 1, LQ_SPM_UNKNOWN = 2, LQ_SPM_CONTROL = 3, LQ_SPM_USER_DEFINED = 4, LQ_SPM_UNUSED = 5, LQ_SPM_BYTE = 6 };

lq_spm *lq_spm_open(const char *path, char *error, size_t error_size);
void lq_spm_close(lq_spm *model);
int32_t lq_spm_count(const lq_spm *model);
/// Piece `id`'s UTF-8 text, `*length` bytes, valid while the model is open.
const char *lq_spm_piece(const lq_spm *model, int32_t id, size_t *length);
float lq_spm_score(const lq_spm *model, int32_t id);
/// One of the LQ_SPM_* types, tested in convert_hf_to_gguf.py's order (unknown, control, unused, byte).
int32_t lq_spm_type(const lq_spm *model, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
