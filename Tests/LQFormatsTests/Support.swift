import Foundation

/// A fresh temporary directory, removed by the caller with `cleanUp()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "lqlora-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }

    /// Entries other than `expected`: leftovers such as temporary files.
    func contents() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: path).sorted()) ?? [] }
}

/// Builds a safetensors file byte by byte, so malformed files can be made on purpose.
func craftSafetensors(header: String, buffer: [UInt8] = [], declaredLength: UInt64? = nil) -> Data {
    var data = Data()
    var n = (declaredLength ?? UInt64(header.utf8.count)).littleEndian
    withUnsafeBytes(of: &n) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: buffer)
    return data
}

/// Root of the package, found from this file's location.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
