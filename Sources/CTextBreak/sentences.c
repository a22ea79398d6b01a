#include "lq_text_break.h"
#include <unicode/ubrk.h>
#include <unicode/utypes.h>

int32_t lq_sentence_ends(const uint16_t *text, int32_t length, int32_t *ends, int32_t capacity, const char **error) {
    UErrorCode status = U_ZERO_ERROR;
    // "@ss=standard": ICU's list of abbreviations after which a period ends no sentence.
    UBreakIterator *it = ubrk_open(UBRK_SENTENCE, "en@ss=standard", (const UChar *)text, length, &status);
    if (U_FAILURE(status)) {
        *error = u_errorName(status);
        return -1;
    }
    int32_t n = 0;
    for (int32_t end = ubrk_next(it); end != UBRK_DONE; end = ubrk_next(it)) {
        if (n < capacity) ends[n] = end;
        n++;
    }
    ubrk_close(it);
    return n;
}
