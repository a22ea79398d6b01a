// ICU regular expressions with a bound on the work one match may take, for patterns that come from
// files (a tokenizer.json's Split regex, a task file's answer pattern): NSRegularExpression runs the
// same ICU engine but without its time limit, so a pattern that backtracks catastrophically hangs.
#ifndef LQ_REGEX_H
#define LQ_REGEX_H
#include <stdint.h>

typedef struct lq_regex lq_regex;

/// Compiles `pattern[0..<length]` (UTF-16, no flags). On failure returns NULL with ICU's error name
/// in `error` and the offending UTF-16 offset in `error_offset` (-1 when unknown).
lq_regex *lq_regex_open(const uint16_t *pattern, int32_t length, const char **error, int32_t *error_offset);
void lq_regex_close(lq_regex *regex);

/// The number of capture groups in the pattern.
int32_t lq_regex_groups(const lq_regex *regex);

/// Writes the UTF-16 [start, end) of capture group `group` (0: the whole match; -1, -1 where the
/// group took no part) of each non-overlapping match in `text[0..<length]`, left to right, into
/// `spans` (2 per match) up to `capacity` matches; returns the number of matches (more than
/// `capacity`: call again with room for them), or -1 with ICU's error name in `error`:
/// U_REGEX_TIME_OUT when one match took more than `step_limit` steps of ICU's engine (a step is about
/// 10,000 backtracking moves, milliseconds at most), U_REGEX_STACK_OVERFLOW past 8 MB of backtrack
/// stack. Safe to call from several threads on one `regex` (each call matches on its own clone).
int32_t lq_regex_matches(const lq_regex *regex, const uint16_t *text, int32_t length, int32_t step_limit,
                         int32_t group, int32_t *spans, int32_t capacity, const char **error);

#endif
