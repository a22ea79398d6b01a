import Foundation
import LQFormats
import LQTensor
import Testing

/// ggml's block formats against ggml itself (scripts/make-gguf-kquant-fixtures.py: gguf-py's numpy
/// quantizers and dequantizers, and ggml-quants.c's reference compiled from llama.cpp's source).
struct GGMLBlockTests {
    static let file = packageRoot + "/Tests/LQFormatsTests/Fixtures/ggml-blocks.gguf"
    static let read: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl]
    static let written: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// A tensor's stored bytes, read from the file directly (not through the code under test).
    static func storedBytes(_ gguf: GGUFFile, _ name: String) throws -> [UInt8] {
        let info = try gguf.info(name)
        let type = GGMLType(rawValue: info.rawType)!
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        let start = gguf.dataStart + info.offset
        return Array(data[start..<(start + GGMLBlocks.byteCount(type, values: info.count))])
    }

    @Test(arguments: read)
    func dequantizationIsGGMLs(type: GGMLType) throws {
        let gguf = try GGUFFile(path: Self.file)
        let name = type.name.lowercased()
        for (tensor, oracle) in [(name + ".blocks", name + ".dequant"), (name + ".random", name + ".random.dequant")] {
            let got = try gguf.floatTensor(gguf.info(tensor))
            let expected = try gguf.floatTensor(gguf.info(oracle))
            #expect(got.shape == expected.shape, "\(tensor)")
            #expect(got.array.map(\.bitPattern) == expected.array.map(\.bitPattern), "\(tensor)")
        }
    }

    @Test(arguments: written)
    func quantizationIsGGMLsByteForByte(type: GGMLType) throws {
        let gguf = try GGUFFile(path: Self.file)
        let source = try gguf.floatTensor(gguf.info("source"))
        let expected = try Self.storedBytes(gguf, type.name.lowercased() + ".blocks")
        var got = [UInt8](repeating: 0xAA, count: expected.count)
        got.withUnsafeMutableBytes { GGMLBlocks.quantize(type, UnsafeBufferPointer(source.buffer), rows: source.shape[0], into: $0) }
        #expect(got.count == expected.count)
        let firstDifference = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        #expect(firstDifference == nil, "\(type.name): first differing byte \(firstDifference ?? -1) of \(expected.count)")
    }

    @Test func unsupportedTypesAreNamedWithTheSupportedOnes() {
        let message = GGUFError.unsupportedTensorType(path: "m.gguf", tensor: "blk.0.attn_q.weight", type: 16).description
        #expect(message.contains("IQ2_XXS") && message.contains("blk.0.attn_q.weight"))
        for type in Self.read { #expect(message.contains(type.name)) }
    }
}
