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
