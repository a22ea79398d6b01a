import Foundation
import LQFormats
import LQTensor
import LQTestSupport
import Testing

/// The fixtures scripts/make-cli-fixtures.py writes, and the built `lqlora` run as a user would run it.
enum CLI {
    static let binary = BuiltCommand.path
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures"
    /// Root of the package, found from this file's location.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// The tiny Llama (Tests/LQModelTests/Fixtures/llama/mha) with a 128-id byte-level BPE tokenizer.
    static let model = fixtures + "/mha"
    static let adapter = model + "/adapter"
    static func text(_ name: String) -> String { fixtures + "/text/" + name }

    /// oracles.json: values from tokenizers, transformers, PEFT, bitsandbytes and torch.
    static let oracles: [String: Any] = {
        let data = FileManager.default.contents(atPath: fixtures + "/oracles.json")!
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    /// oracles.safetensors: logits, reference dequantizations and PEFT's merge.
    static func tensors() throws -> SafeTensorsFile { try SafeTensorsFile(path: fixtures + "/oracles.safetensors") }

    /// Runs `lqlora arguments`, killed after two minutes.
    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try BuiltCommand.run(arguments, timeout: 120)
    }

    /// `run`, recording the command's stderr when it does not exit 0.
    static func succeed(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let r = try run(arguments)
        #expect(r.status == 0, "lqlora \(arguments.joined(separator: " ")): \(r.stderr)", sourceLocation: sourceLocation)
        return r.stdout
    }

    static func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    static func jsonFile(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
    }

    /// A copy of the tiny model inside `dir`, for a test that edits its files.
    static func modelCopy(in dir: TemporaryDirectory) throws -> String {
        let path = dir.file("model")
        try FileManager.default.copyItem(atPath: model, toPath: path)
        return path
    }

    /// Rewrites the JSON object in `path` through `edit`.
    static func editJSON(_ path: String, _ edit: (inout [String: Any]) -> Void) throws {
        var object = try jsonFile(path)
        edit(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
    }
}

/// Enables a test where the `lqlora` executable sits beside the test bundle.
let builtBinary: ConditionTrait = .enabled(if: CLI.binary != nil, "lqlora binary not built beside the tests")

/// A fresh temporary directory, removed by the caller with `cleanUp()`.
struct TemporaryDirectory {
    let path: String

    init() {
        path = NSTemporaryDirectory() + "lqlora-cli-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }

    /// Its entries, sorted: leftovers such as staging directories show here.
    func contents() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: path).sorted()) ?? [] }
}

/// A safetensors file byte by byte, so malformed ones can be made on purpose (as in LQFormatsTests).
func craftSafetensors(header: String, buffer: [UInt8] = []) -> Data {
    var data = Data()
    var n = UInt64(header.utf8.count).littleEndian
    withUnsafeBytes(of: &n) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: buffer)
    return data
}

/// |a − b| ≤ tolerance · |b|.
func relativelyClose(_ a: Double, _ b: Double, _ tolerance: Double) -> Bool { abs(a - b) <= tolerance * abs(b) }

/// A stored tensor's raw bytes.
func rawBytes(_ file: SafeTensorsFile, _ name: String) throws -> [UInt8] { Array(file.bytes(of: try file.entry(name))) }
