import Foundation
import LQFuzz
import Testing

let fuzzFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz").path

/// A scratch directory, removed by `cleanUp()`.
struct Scratch {
    let path = NSTemporaryDirectory() + "lqlora-fuzz-test-" + UUID().uuidString
    init() { try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
    func cleanUp() { try? FileManager.default.removeItem(atPath: path) }
}

/// The deterministic mutation fuzzer over its committed corpus (scripts/make-fuzz-seeds.py, plus
/// regress-* files, each a crash or hang that was found): a bounded run per target in every
/// `swift test` (LQLORA_FUZZ_RUNS executions, 3,000 by default), scripts/fuzz.sh for long runs.
struct FuzzTests {
    static let runs = Int(ProcessInfo.processInfo.environment["LQLORA_FUZZ_RUNS"] ?? "") ?? 3000
    static let seed = UInt64(ProcessInfo.processInfo.environment["LQLORA_FUZZ_SEED"] ?? "") ?? 1
    /// Refusals expected of corpus files (regressions and seeds the converter refuses), by target/name.
    static let expected = try! JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fuzzFixtures + "/expected.json"))) as! [String: String]

    static func corpus(_ target: FuzzTarget) throws -> [(name: String, bytes: [UInt8])] {
        try Fuzzer.corpus(directory: fuzzFixtures + "/" + target.rawValue)
    }

    /// Every seed is accepted (so mutations start from files that reach the whole parser), every
    /// regression file gives its recorded error, and each file of the corpus has its entry.
    @Test(arguments: FuzzTarget.allCases)
    func corpusFilesGiveTheirOutcomes(target: FuzzTarget) throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        let fuzzer = Fuzzer(target: target, corpus: [[0]], scratch: scratch.path)
        let files = try Self.corpus(target)
        #expect(files.count >= 3)
        for (name, bytes) in files {
            let outcome = fuzzer.execute(bytes)
            if let error = Self.expected[target.rawValue + "/" + name] {
                guard case let .refused(message) = outcome else { Issue.record("\(name): accepted, expected \(error)"); continue }
                #expect(message.contains(error), "\(name): \(message)")
            } else {
                #expect(name.hasPrefix("seed-"), "\(name): a regression file without its expected error in expected.json")
                #expect(outcome == .accepted, "\(name): \(outcome)")
            }
        }
        for key in Self.expected.keys where key.hasPrefix(target.rawValue + "/") {
            #expect(files.contains { target.rawValue + "/" + $0.name == key }, "expected.json names \(key), which is not in the corpus")
        }
    }

    /// A bounded fuzz run: no crash (the runner would die), no execution past the time budget,
    /// and both outcomes reached.
    @Test(arguments: FuzzTarget.allCases)
    func mutationsNeitherCrashNorHang(target: FuzzTarget) throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        let corpus = try Self.corpus(target).map(\.bytes)
        FileHandle.standardError.write(Data("fuzz \(target.rawValue): \(Self.runs) executions, seed \(Self.seed); the current input is \(scratch.path)/\(target.fileName)\n".utf8))
        let report = Fuzzer(target: target, corpus: corpus, scratch: scratch.path, hangSeconds: 30).run(runs: Self.runs, seed: Self.seed)
        #expect(report.executions == Self.runs)
        #expect(report.accepted >= min(corpus.count, Self.runs) - Self.expected.keys.filter { $0.hasPrefix(target.rawValue + "/") }.count)
        #expect(report.refused > Self.runs / 10, "\(report.refused) refused")
        #expect(report.slowest < 2, "the slowest input took \(report.slowest) s: \(String(decoding: report.slowestInput.prefix(200), as: UTF8.self))")
    }

    /// The same seed gives the same run.
    @Test func runsAreDeterministic() throws {
        let scratch = Scratch()
        defer { scratch.cleanUp() }
        let corpus = try Self.corpus(.yaml).map(\.bytes)
        let a = Fuzzer(target: .yaml, corpus: corpus, scratch: scratch.path).run(runs: 300, seed: 9)
        let b = Fuzzer(target: .yaml, corpus: corpus, scratch: scratch.path).run(runs: 300, seed: 9)
        #expect(a.accepted == b.accepted && a.refusalKinds == b.refusalKinds && a.refused > 0)
    }

    /// The field-aimed mutations find a GGUF file's integer fields.
    @Test func ggufFieldsAreFound() throws {
        let bytes = try Self.corpus(.gguf).first { $0.name == "seed-llama-bpe.gguf" }!.bytes
        let fields = GGUFFields.integerFields(bytes)
        // version, tensor count, kv count, then per entry at least a key length and a type.
        #expect(fields.prefix(3).map(\.offset) == [4, 8, 16])
        #expect(fields.count > 100)
    }
}
