import Foundation
import LQFormats
import LQTensor
import Testing

/// Checks against files written by the reference library (scripts/make-safetensors-fixtures.py).
struct ReferenceFixtureTests {
    static let fixtures = packageRoot + "/Tests/LQFormatsTests/Fixtures"

    struct Summary: Decodable {
        struct Entry: Decodable { let dtype: String; let shape: [Int]; let values: [Double] }
        let tensors: [String: Entry]
    }

    @Test func readsWhatTheReferenceWrote() throws {
        let file = try SafeTensorsFile(path: Self.fixtures + "/reference.safetensors")
        let summary = try JSONDecoder().decode(Summary.self, from: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/reference.json")))
        #expect(Set(file.tensorNames) == Set(summary.tensors.keys))
        for (name, expected) in summary.tensors {
            let entry = try file.entry(name)
            #expect(entry.dtype.rawValue == expected.dtype && entry.shape == expected.shape, "\(name)")
            let values = try file.floatTensor(name).array
            // Every fixture value is exactly representable in fp32 except F64 and wide integers.
            #expect(values.count == expected.values.count, "\(name): \(values.count) values vs \(expected.values.count)")
            for (got, want) in zip(values, expected.values) {
                #expect(got == Float(want), "\(name): \(got) vs \(want)")
            }
        }
    }

    @Test func writesTheSameBytesAsTheReference() throws {
        let referencePath = Self.fixtures + "/reference.safetensors"
        let file = try SafeTensorsFile(path: referencePath)
        let pending = file.entries.map { e in
            PendingTensor(name: e.name, dtype: e.dtype, shape: e.shape, bytes: Array(file.bytes(of: e)))
        }
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        // Feed the tensors in reverse name order: the writer must impose the reference order itself.
        try SafeTensorsWriter.write(pending.sorted { $0.name > $1.name }, to: dir.file("ours.safetensors"))
        let ours = try Data(contentsOf: URL(fileURLWithPath: dir.file("ours.safetensors")))
        let theirs = try Data(contentsOf: URL(fileURLWithPath: referencePath))
        #expect(ours == theirs)
    }

    @Test func acceptsAndRejectsWhatTheReferenceDoes() throws {
        let verdicts = try JSONDecoder().decode([String: String].self,
                                                from: Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/rejected.json")))
        let cases: [String: Data] = [
            "leading-space": craftSafetensors(header: " {}"),
            "trailing-spaces": craftSafetensors(header: "{}      "),
            "gap": craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#, buffer: [UInt8](repeating: 0, count: 8)),
            "trailing-bytes": craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, buffer: [1, 2, 3]),
            "size-mismatch": craftSafetensors(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, buffer: [0, 0, 0, 0]),
            "metadata-not-strings": craftSafetensors(header: #"{"__metadata__": {"k": 1}}"#),
            "unknown-dtype": craftSafetensors(header: #"{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}"#, buffer: [0]),
            "zero-elements": craftSafetensors(header: #"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#),
            "scalar": craftSafetensors(header: #"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#, buffer: [0, 0, 128, 63]),
        ]
        #expect(Set(cases.keys) == Set(verdicts.keys))
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        for (name, data) in cases {
            let path = dir.file(name)
            try data.write(to: URL(fileURLWithPath: path))
            let accepted = (try? SafeTensorsFile(path: path)) != nil
            #expect(accepted == (verdicts[name] == "accepted"), "\(name): reference says \(verdicts[name] ?? "?")")
        }
    }
}
