import Foundation
import LQFormats
import LQQuant
import LQTensor
import Testing

struct StorageTests {
    static func roundTrip(_ config: QuantConfig, original: DType = .bf16) throws -> (QuantizedMatrix, QuantizedMatrix, DType) {
        let w = KernelTests.matrix(64, 512, seed: 11)
        let q = try Quantizer.quantize(w, config: config)
        let name = "model.layers.0.mlp.up_proj.weight"
        let dir = NSTemporaryDirectory() + "lqlora-storage-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var metadata = SafeTensorsWriter.defaultMetadata
        metadata.merge(QuantizedStorage.metadata(for: q, name: name, original: original)) { a, _ in a }
        let other = PendingTensor(name: "model.norm.weight", tensor: Tensor(shape: [4], values: [1, 2, 3, 4]))
        try CheckpointWriter.write(QuantizedStorage.tensors(for: q, name: name, original: original) + [other],
                                   toDirectory: dir, metadata: metadata)
        let checkpoint = try Checkpoint(path: dir)
        #expect(QuantizedStorage.quantizedWeights(in: checkpoint) == [name])
        #expect(try QuantizedStorage.describe(name, in: checkpoint).config == config)
        let (loaded, dtype) = try QuantizedStorage.load(name, from: checkpoint)
        return (q, loaded, dtype)
    }

    @Test(arguments: [QuantConfig.nf4DoubleQuant, .plain(bits: 4), .qlora(bits: 3), .plain(bits: 2, blockSize: 32),
                      QuantConfig(bits: 8, blockSize: 16, scale: .uint(bits: 3, groupSize: 64, dtype: .fp16)),
                      QuantConfig(bits: 3, blockSize: 64, scale: .dynamic8)])
    func layoutsRoundTrip(config: QuantConfig) throws {
        let (q, loaded, dtype) = try Self.roundTrip(config)
        #expect(dtype == .bf16)
        #expect(loaded.config == config && loaded.rows == q.rows && loaded.cols == q.cols)
        #expect(loaded.codes == q.codes && loaded.scaleCodes == q.scaleCodes && loaded.absmax == q.absmax)
        #expect(loaded.groupAbsmax == q.groupAbsmax && loaded.scaleOffset == q.scaleOffset)
        #expect(loaded.dequantize().array == q.dequantize().array)
    }

    /// What the planner sizes is what is written: every lqlora-layout configuration of the grid
    /// (and the per-block and dq8 ones), on a matrix whose last scale group is short, has the
    /// planned tensors and metadata of its quantized parts; and a checkpoint quantized with a mix
    /// of them has the planned weight-file bytes.
    @Test func plannedLayoutsAreWhatIsWritten() throws {
        let w = KernelTests.matrix(96, 64, seed: 12)  // 6144 values: 384 blocks of 16, a group of 256 and one of 128
        let configs = QuantConfig.lqloraGrid + [.plain(bits: 3), .plain(bits: 2, blockSize: 32), QuantConfig(bits: 3, blockSize: 64, scale: .dynamic8)]
        for config in configs {
            let q = try Quantizer.quantize(w, config: config)
            let planned = QuantizedStorage.planned(config: config, rows: 96, cols: 64, name: "m.weight", original: .bf16)
            let written = QuantizedStorage.tensors(for: q, name: "m.weight", original: .bf16)
            #expect(planned.tensors == written.map { PlannedTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }, "\(config.name)")
            #expect(planned.metadata == QuantizedStorage.metadata(for: q, name: "m.weight", original: .bf16))
        }

        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/LQModelTests/Fixtures/llama/mha"
        let checkpoint = try Checkpoint(path: model)
        let targets = checkpoint.tensorNames.filter { $0.hasSuffix("_proj.weight") }
        for trial in 0..<3 {
            var chosen: [String: QuantConfig] = [:]
            for (i, name) in targets.enumerated() { chosen[name] = configs[(i * 131 + trial * 17) % configs.count] }
            var quantized: [String: QuantizedWeight] = [:]
            for (name, config) in chosen { quantized[name] = QuantizedWeight(try Quantizer.quantize(try checkpoint.floatTensor(name), config: config), original: .f32) }
            let dir = NSTemporaryDirectory() + "lqlora-planned-" + UUID().uuidString
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try QuantizedCheckpoint.write(from: checkpoint, quantized: quantized, modelConfig: [:], to: dir)
            let size = try FileManager.default.attributesOfItem(atPath: dir + "/model.safetensors")[.size] as! Int
            #expect(try QuantizedCheckpoint.weightFileBytes(from: checkpoint, configs: chosen) == size, "trial \(trial)")
        }
    }

    /// The quant state bitsandbytes wrote for the bf16 fixture matrix, byte for byte.
    @Test func bitsandbytesStateAndKeysMatchTheFixture() throws {
        struct Fixture: Decodable { let quant_state: String; let keys: [String] }
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: fixtureDirectory + "/bnb-nf4-state.json")))
        let file = try SafeTensorsFile(path: fixtureDirectory + "/bnb-nf4.safetensors")
        let input = try file.floatTensor("normal.input")
        // bitsandbytes quantized the bf16 copy of the matrix.
        let bf16 = Tensor(shape: input.shape, values: input.array.map { Float(bitPattern: UInt32(lqRoundBF16($0)) << 16) })
        let q = try Quantizer.quantize(bf16, config: .nf4DoubleQuant)
        let tensors = QuantizedStorage.tensors(for: q, name: "w.weight", original: .bf16)
        let stateTensor = try #require(tensors.first { $0.name == "w.weight" + QuantizedStorage.bnbStateSuffix })
        var bytes = [UInt8](repeating: 0, count: stateTensor.byteCount)
        try bytes.withUnsafeMutableBytes { try stateTensor.fill($0) }
        #expect(String(decoding: bytes, as: UTF8.self) == fixture.quant_state)
        #expect(Set(tensors.map(\.name)) == Set(["w.weight"] + fixture.keys.map { "w.weight." + $0 }))
    }

    func lqRoundBF16(_ v: Float) -> UInt16 {
        let lo = UInt16(v.bitPattern >> 16), hi = lo &+ 1
        let dl = abs(Double(Float(bitPattern: UInt32(lo) << 16)) - Double(v))
        let dh = abs(Double(Float(bitPattern: UInt32(hi) << 16)) - Double(v))
        return dl < dh || (dl == dh && lo & 1 == 0) ? lo : hi
    }
}
