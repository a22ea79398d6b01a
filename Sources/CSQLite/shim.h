// SQLite, the passage store of `lqlora rag`.
#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro over a function-pointer cast, which Swift does not import:
// it makes SQLite copy a bound text or blob before the call returns.
static inline int lq_sqlite_bind_transient_text(sqlite3_stmt *s, int i, const char *text, int bytes) {
    return sqlite3_bind_text(s, i, text, bytes, SQLITE_TRANSIENT);
}
static inline int lq_sqlite_bind_transient_blob(sqlite3_stmt *s, int i, const void *data, int bytes) {
    return sqlite3_bind_blob(s, i, data, bytes, SQLITE_TRANSIENT);
}
