#include "lq_regex.h"
#include <stdlib.h>
#include <unicode/uregex.h>
#include <unicode/utypes.h>

struct lq_regex { URegularExpression *compiled; };

lq_regex *lq_regex_open(const uint16_t *pattern, int32_t length, const char **error, int32_t *error_offset) {
    UErrorCode status = U_ZERO_ERROR;
    UParseError where = {0};
    URegularExpression *compiled = uregex_open((const UChar *)pattern, length, 0, &where, &status);
    if (U_FAILURE(status)) {
        *error = u_errorName(status);
        *error_offset = where.offset;
        return NULL;
    }
    lq_regex *regex = malloc(sizeof *regex);
    if (!regex) {
        uregex_close(compiled);
        *error = u_errorName(U_MEMORY_ALLOCATION_ERROR);
        *error_offset = -1;
        return NULL;
    }
    regex->compiled = compiled;
    return regex;
}

void lq_regex_close(lq_regex *regex) {
    if (!regex) return;
    uregex_close(regex->compiled);
    free(regex);
}

int32_t lq_regex_groups(const lq_regex *regex) {
    UErrorCode status = U_ZERO_ERROR;
    int32_t n = uregex_groupCount(regex->compiled, &status);
    return U_SUCCESS(status) ? n : 0;
}

int32_t lq_regex_matches(const lq_regex *regex, const uint16_t *text, int32_t length, int32_t step_limit,
                         int32_t group, int32_t *spans, int32_t capacity, const char **error) {
    UErrorCode status = U_ZERO_ERROR;
    // A clone shares the compiled pattern but has its own match state.
    URegularExpression *matcher = uregex_clone(regex->compiled, &status);
    uregex_setText(matcher, (const UChar *)text, length, &status);
    uregex_setTimeLimit(matcher, step_limit, &status);
    int32_t n = 0;
    while (U_SUCCESS(status) && uregex_findNext(matcher, &status)) {
        int32_t start = uregex_start(matcher, group, &status), end = uregex_end(matcher, group, &status);
        if (n < capacity) {
            spans[2 * n] = start;
            spans[2 * n + 1] = end;
        }
        n++;
    }
    uregex_close(matcher);
    if (U_FAILURE(status)) {
        *error = u_errorName(status);
        return -1;
    }
    return n;
}
