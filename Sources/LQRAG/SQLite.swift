import CSQLite
import Foundation

/// A failed SQLite call, with the database file, SQLite's message and the statement.
public struct SQLiteError: Error, CustomStringConvertible {
    public let path: String
    public let code: Int32
    public let message: String
    public let statement: String?

    public var description: String {
        "\(path): SQLite: \(message)" + (statement.map { " (in \"\($0.prefix(80))\")" } ?? "")
    }
}

/// One SQLite connection: statements, bindings and rows, nothing more (the SQL is the caller's).
final class SQLiteDatabase {
    let path: String
    private var handle: OpaquePointer?

    /// Opens `path`; `create` makes the file when it is missing.
    init(path: String, create: Bool) throws {
        self.path = path
        let flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(status))
            sqlite3_close(handle)
            throw SQLiteError(path: path, code: status, message: message, statement: nil)
        }
        // Another writer holding the lock is waited for, not reported at once.
        sqlite3_busy_timeout(handle, 10_000)
        try execute("PRAGMA foreign_keys = ON")
    }

    deinit { sqlite3_close(handle) }

    func failure(_ status: Int32, _ sql: String?) -> SQLiteError {
        SQLiteError(path: path, code: status, message: String(cString: sqlite3_errmsg(handle)), statement: sql)
    }

    /// Runs statements that return no rows.
    func execute(_ sql: String) throws {
        let status = sqlite3_exec(handle, sql, nil, nil, nil)
        guard status == SQLITE_OK else { throw failure(status, sql) }
    }

    func prepare(_ sql: String) throws -> Statement {
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v2(handle, sql, -1, &statement, nil)
        guard status == SQLITE_OK, let statement else { throw failure(status, sql) }
        return Statement(database: self, handle: statement, sql: sql)
    }

    /// The rows of `sql` with `values` bound to its parameters, each read by `row`.
    func query<T>(_ sql: String, _ values: [Value] = [], row: (Statement) throws -> T) throws -> [T] {
        let statement = try prepare(sql)
        try statement.bind(values)
        var out: [T] = []
        while try statement.step() { out.append(try row(statement)) }
        return out
    }

    /// Runs `sql` once with `values` bound.
    func run(_ sql: String, _ values: [Value] = []) throws {
        let statement = try prepare(sql)
        try statement.bind(values)
        while try statement.step() {}
    }

    var lastInsertedRow: Int64 { sqlite3_last_insert_rowid(handle) }

    /// `body` inside one transaction: committed when it returns, rolled back when it throws (and by
    /// SQLite itself when the process dies first). IMMEDIATE takes the write lock at the start, so two
    /// writers never both read the state one of them is about to change.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// A value bound to a statement parameter.
    enum Value {
        case int(Int64), double(Double), text(String), blob([UInt8]), null

        static func int(_ v: Int) -> Value { .int(Int64(v)) }
        static func optional(_ s: String?) -> Value { s.map(Value.text) ?? .null }
    }

    /// A prepared statement; rows are read while `step` returns true.
    final class Statement {
        let database: SQLiteDatabase
        let handle: OpaquePointer
        let sql: String

        init(database: SQLiteDatabase, handle: OpaquePointer, sql: String) {
            self.database = database
            self.handle = handle
            self.sql = sql
        }

        deinit { sqlite3_finalize(handle) }

        func bind(_ values: [Value]) throws {
            sqlite3_reset(handle)
            sqlite3_clear_bindings(handle)
            for (i, value) in values.enumerated() {
                let index = Int32(i + 1)
                let status: Int32
                switch value {
                case let .int(v): status = sqlite3_bind_int64(handle, index, v)
                case let .double(v): status = sqlite3_bind_double(handle, index, v)
                case let .text(s):
                    status = s.withCString { lq_sqlite_bind_transient_text(handle, index, $0, Int32(s.utf8.count)) }
                case let .blob(bytes):
                    // A zero-length blob still needs a non-null pointer, or SQLite binds NULL.
                    status = bytes.withUnsafeBytes { lq_sqlite_bind_transient_blob(handle, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, Int32(bytes.count)) }
                case .null: status = sqlite3_bind_null(handle, index)
                }
                guard status == SQLITE_OK else { throw database.failure(status, sql) }
            }
        }

        /// Advances to the next row: false when there are no more.
        func step() throws -> Bool {
            let status = sqlite3_step(handle)
            switch status {
            case SQLITE_ROW: return true
            case SQLITE_DONE: return false
            default: throw database.failure(status, sql)
            }
        }

        func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
        func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
        func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

        func text(_ column: Int32) -> String {
            guard let p = sqlite3_column_text(handle, column) else { return "" }
            let n = Int(sqlite3_column_bytes(handle, column))
            return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
        }

        func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }

        /// A blob column's bytes, handed to `body` without a copy.
        func withBlob<T>(_ column: Int32, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
            let p = sqlite3_column_blob(handle, column)
            let n = Int(sqlite3_column_bytes(handle, column))
            return try body(UnsafeRawBufferPointer(start: p, count: p == nil ? 0 : n))
        }
    }
}
