// Sentence boundaries by ICU's break iterator (Unicode UAX #29 with the English abbreviation
// exceptions, so "Mr. Smith" stays one sentence). ICU's own headers stay in the .c file: the Swift
// toolchain's Foundation carries another ICU whose types would clash with them in Swift.
#ifndef LQ_TEXT_BREAK_H
#define LQ_TEXT_BREAK_H
#include <stdint.h>

/// Writes the UTF-16 offsets where each sentence of `text[0..<length]` ends (the last is `length`)
/// into `ends`, up to `capacity` of them; returns how many there are (more than `capacity`: call
/// again with room for them), or -1 with ICU's error name in `error` when the iterator fails.
int32_t lq_sentence_ends(const uint16_t *text, int32_t length, int32_t *ends, int32_t capacity, const char **error);

#endif
