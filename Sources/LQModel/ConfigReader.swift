import Foundation

/// Typed reads of a JSON configuration object (config.json, sentence-transformers' module
/// configs), each error naming the file and the key.
struct ConfigReader {
    let json: [String: Any]
    let path: String

    /// The JSON object in the file at `path`.
    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { throw ModelError.badConfig(path: path, key: "(file)", detail: "is missing or not a JSON object") }
        self.init(json: json, path: path)
    }

    init(json: [String: Any], path: String) {
        self.json = json
        self.path = path
    }

    func bad(_ key: String, _ detail: String) -> ModelError { .badConfig(path: path, key: key, detail: detail) }

    /// A positive integer; `default` when the key is absent (required without one).
    func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let v = json[key] else {
            if let d { return d }
            throw bad(key, "is missing")
        }
        guard let n = v as? NSNumber, !isJSONBool(n), Double(n.intValue) == n.doubleValue, n.intValue > 0 else {
            throw bad(key, "must be a positive integer, not \(v)")
        }
        return n.intValue
    }

    func float(_ key: String, default d: Float) throws -> Float {
        guard let v = json[key] else { return d }
        guard let n = v as? NSNumber, !isJSONBool(n) else { throw bad(key, "must be a number, not \(v)") }
        return n.floatValue
    }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = json[key], !(v is NSNull) else { return d }
        guard let n = v as? NSNumber, isJSONBool(n) else { throw bad(key, "must be true or false, not \(v)") }
        return n.boolValue
    }

    func string(_ key: String, default d: String? = nil) throws -> String {
        guard let v = json[key], !(v is NSNull) else {
            if let d { return d }
            throw bad(key, "is missing")
        }
        guard let s = v as? String else { throw bad(key, "must be a string, not \(v)") }
        return s
    }
}

/// JSONSerialization's booleans are NSNumbers of type "c"; `is Bool` also matches the numbers 0 and 1.
func isJSONBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
