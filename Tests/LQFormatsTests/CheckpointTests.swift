import Foundation
import LQCLI
import LQFormats
import LQTensor
import LQTestSupport
import Testing

struct CheckpointTests {
    /// Twelve tensors of 1 KiB (256 fp32 each) plus one of bf16.
    static func tensors() -> [PendingTensor] {
        var out: [PendingTensor] = []
        for i in 0..<12 {
            out.append(PendingTensor(name: "model.layers.\(i).w", tensor: Tensor(shape: [16, 16], values: (0..<256).map { Float($0 + i) })))
        }
        out.append(PendingTensor(name: "model.norm.weight", tensor: Tensor(shape: [8], values: [1, 2, 3, 4, 5, 6, 7, 8]), dtype: .bf16))
        return out
    }

    @Test func shardedWriteAndReadAgree() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let names = try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path, maxShardBytes: 3100)
        #expect(names.count == 5 && names.last == Checkpoint.indexFileName)
        #expect(names.first == "model-00001-of-00004.safetensors")
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file(Checkpoint.indexFileName)))) as! [String: Any]
        #expect((index["metadata"] as! [String: Any])["total_size"] as? Int == 12 * 1024 + 16)
        #expect((index["weight_map"] as! [String: String])["model.layers.0.w"] == "model-00001-of-00004.safetensors")

        let checkpoint = try Checkpoint(path: dir.path)
        #expect(checkpoint.files.count == 4)
        #expect(Set(checkpoint.tensorNames) == Set(Self.tensors().map(\.name)))
        #expect(try checkpoint.floatTensor("model.layers.11.w").array == (0..<256).map { Float($0 + 11) })
        #expect(try checkpoint.floatTensor("model.norm.weight").array == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(dir.contents().allSatisfy { !$0.hasPrefix(".") })
    }

    /// writtenBytes, from the tensors' headers alone, is every byte write puts on disk, in one
    /// file or in shards with their index.
    @Test func writtenBytesAreTheFilesSizes() throws {
        let metadata = ["format": "pt", "lqlora.quant.x": "{\"config\": \"nf3-b64-s8g256-bf16\"}"]
        for limit in [3100, CheckpointWriter.defaultMaxShardBytes] {
            let dir = TemporaryDirectory()
            defer { dir.cleanUp() }
            let names = try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path, maxShardBytes: limit, metadata: metadata)
            let onDisk = try names.reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: dir.file($1))[.size] as! Int) }
            let headers = Self.tensors().map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
            #expect(try CheckpointWriter.writtenBytes(headers, maxShardBytes: limit, metadata: metadata) == onDisk, "limit \(limit)")
            #expect(names.count == (limit == 3100 ? 5 : 1))
        }
    }

    @Test func singleFileBelowTheShardLimit() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        #expect(try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path) == ["model.safetensors"])
        let viaDir = try Checkpoint(path: dir.path)
        let viaFile = try Checkpoint(path: dir.file("model.safetensors"))
        #expect(viaDir.tensorNames == viaFile.tensorNames && viaDir.tensorNames.count == 13)
    }

    @Test func aMissingShardIsNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path, maxShardBytes: 3100)
        try FileManager.default.removeItem(atPath: dir.file("model-00002-of-00004.safetensors"))
        #expect(throws: SafeTensorsError.shardMissing(path: dir.file(Checkpoint.indexFileName),
                                                      shard: "model-00002-of-00004.safetensors", tensor: "model.layers.3.w")) {
            try Checkpoint(path: dir.path)
        }
    }

    @Test func aTensorMissingFromItsShardIsNamed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path, maxShardBytes: 3100)
        let indexPath = dir.file(Checkpoint.indexFileName)
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: indexPath))) as! [String: Any]
        var map = index["weight_map"] as! [String: String]
        map["model.layers.0.w"] = "model-00003-of-00004.safetensors"
        index["weight_map"] = map
        try JSONSerialization.data(withJSONObject: index).write(to: URL(fileURLWithPath: indexPath))
        #expect(throws: SafeTensorsError.tensorMissingFromShard(path: indexPath, shard: "model-00003-of-00004.safetensors",
                                                                tensor: "model.layers.0.w")) {
            try Checkpoint(path: dir.path)
        }
    }

    @Test func aDirectoryWithoutWeightsIsNamed() {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        #expect(throws: SafeTensorsError.noCheckpoint(path: dir.path)) { try Checkpoint(path: dir.path) }
    }

    @Test func inspectReportCountsEverything() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try CheckpointWriter.write(Self.tensors(), toDirectory: dir.path, maxShardBytes: 3100)
        let report = try InspectReport(checkpoint: try Checkpoint(path: dir.path))
        #expect(report.num_tensors == 13 && report.num_parameters == 12 * 256 + 8 && report.bytes == 12 * 1024 + 16)
        let json = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        #expect(Set(json.keys) == ["num_tensors", "num_parameters", "bytes", "tensors"])
        let first = (json["tensors"] as! [[String: Any]])[0]
        #expect(Set(first.keys) == ["name", "dtype", "shape", "bytes"])
        #expect(report.text().contains("13 tensors, 3,080 parameters"))
    }

    @Test func gzipRoundTrip() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let text = Data(String(repeating: "{\"text\": \"héllo wörld\"}\n", count: 5000).utf8)
        try Gzip.write(text, to: dir.file("d.jsonl.gz"))
        let size = (try FileManager.default.attributesOfItem(atPath: dir.file("d.jsonl.gz"))[.size] as! Int)
        #expect(size < text.count / 10)
        #expect(try Gzip.readMaybeCompressed(path: dir.file("d.jsonl.gz")) == text)
        try Data([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2]).write(to: URL(fileURLWithPath: dir.file("bad.gz")))
        #expect(throws: GzipError.self) { try Gzip.read(path: dir.file("bad.gz")) }
    }

    /// A decompression bomb (here 8 MiB of zeros in 8 KiB) is refused once it expands past the
    /// limit's floor and ratio, instead of filling the memory; real text under the same limit reads.
    @Test func aDecompressionBombIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try Gzip.write(Data(count: 8 << 20), to: dir.file("bomb.jsonl.gz"))
        let limit = Gzip.ExpansionLimit(bytes: 1 << 20, ratio: 100)
        #expect(throws: GzipError.expandsTooFar(path: dir.file("bomb.jsonl.gz"), bytes: 1 << 20, ratio: 100)) {
            try Gzip.read(path: dir.file("bomb.jsonl.gz"), limit: limit)
        }
        #expect(try Gzip.read(path: dir.file("bomb.jsonl.gz")).count == 8 << 20)  // the standard floor is 1 GiB
        var text = ""
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200_000 { text += String(UnicodeScalar(UInt8(97 + Int(rng.next() % 26)))) + (rng.next() % 6 == 0 ? " " : "") }
        try Gzip.write(Data(text.utf8), to: dir.file("text.txt.gz"))
        #expect(try Gzip.read(path: dir.file("text.txt.gz"), limit: Gzip.ExpansionLimit(bytes: 1 << 10, ratio: 100)) == Data(text.utf8))
        #expect("\(GzipError.expandsTooFar(path: "d.gz", bytes: 1 << 30, ratio: 100))".hasPrefix("d.gz: expands past 1024 MiB and past 100× its compressed size"))
    }
}

/// The real checkpoint, when scripts/fetch-minilm.sh has fetched it.
struct RealCheckpointTests {
    static let miniLM = RealModel.miniLM

    @Test(.enabled(if: RealModel.enabled(miniLM), "all-MiniLM-L6-v2 not fetched: run scripts/fetch-minilm.sh"))
    func inspectsAllMiniLM() throws {
        let checkpoint = try Checkpoint(path: Self.miniLM)
        let report = try InspectReport(checkpoint: checkpoint)
        #expect(report.num_tensors == 104)
        #expect(report.num_parameters == 22_713_728)
        #expect(try checkpoint.config()?["model_type"] as? String == "bert")
        let embeddings = try checkpoint.floatTensor("embeddings.word_embeddings.weight")
        #expect(embeddings.shape == [30522, 384])
        #expect(embeddings.array.allSatisfy { $0.isFinite })
    }
}
