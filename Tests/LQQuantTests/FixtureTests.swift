import CKernels
import Foundation
import LQFormats
import LQQuant
import LQTensor
import Testing

let fixtureDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// Bit-for-bit agreement with bitsandbytes (scripts/make-quant-fixtures.py).
struct BitsandbytesFixtureTests {
    static let file = try! SafeTensorsFile(path: fixtureDirectory + "/bnb-nf4.safetensors")
    static let cases = ["normal", "wide", "odd", "outliers", "zero_block"]

    func floats(_ name: String) throws -> [Float] { try Self.file.floatTensor(name).array }
    func bytes(_ name: String) throws -> [UInt8] { Array(Self.file.bytes(of: try Self.file.entry(name))) }

    @Test(arguments: [2, 3, 4, 8])
    func codebooksMatchTheReferenceConstruction(bits: Int) throws {
        expectIdentical(NormalFloat.codebook(bits: bits), try floats("codebook.nf\(bits)"), "nf\(bits)")
    }

    @Test func nf4IsBitsandbytesTable() throws {
        expectIdentical(NormalFloat.codebook(bits: 4), try floats("nf4_map"), "NormalFloat.codebook(bits: 4)")
        #expect(NormalFloat.codebook(bits: 4) == [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                                                  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                                                  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                                                  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                                                  0.7229568362236023, 1.0])
        expectIdentical(bitsandbytesDynamicMap, try floats("dynamic_map"), "bitsandbytesDynamicMap")
    }

    @Test(arguments: cases)
    func plainNF4MatchesBitsandbytes(name: String) throws {
        let input = try Self.file.floatTensor("\(name).input")
        let q = try Quantizer.quantize(input, config: .plain(bits: 4))
        expectIdentical(q.codes, try bytes("\(name).plain.codes"), "\(name) codes")
        expectIdentical(q.absmax, try floats("\(name).plain.absmax"), "\(name) absmax")
        let expected = try floats("\(name).plain.dequantized")
        expectIdentical(q.dequantize(level: LQ_LEVEL_SCALAR).array, expected, "\(name) scalar")
        expectIdentical(q.dequantize(level: lq_best_level()).array, expected, "\(name) simd")
    }

    @Test(arguments: cases)
    func doubleQuantizedNF4MatchesBitsandbytes(name: String) throws {
        let input = try Self.file.floatTensor("\(name).input")
        let q = try Quantizer.quantize(input, config: .nf4DoubleQuant)
        expectIdentical(q.codes, try bytes("\(name).dq.codes"), "\(name) codes")
        expectIdentical(q.scaleCodes, try bytes("\(name).dq.absmax"), "\(name) scale codes")
        expectIdentical(q.groupAbsmax, try floats("\(name).dq.nested_absmax"), "\(name) nested")
        expectIdentical([q.scaleOffset], try floats("\(name).dq.offset"), "\(name) offset")
        let expected = try floats("\(name).dq.dequantized")
        expectIdentical(q.dequantize(level: LQ_LEVEL_SCALAR).array, expected, "\(name) scalar")
        expectIdentical(q.dequantize(level: lq_best_level()).array, expected, "\(name) simd")
    }
}

/// Agreement with LQ-LoRA's blockwise double quantization (its formulas, run in torch).
struct LQLoRAGridFixtureTests {
    static let file = try! SafeTensorsFile(path: fixtureDirectory + "/lqlora-grid.safetensors")
    static let configs: [(String, QuantConfig)] = [
        ("b3_B64_s8_G256_float32", QuantConfig(bits: 3, blockSize: 64, scale: .uint(bits: 8, groupSize: 256, dtype: .fp32))),
        ("b2_B16_s4_G16_bfloat16", QuantConfig(bits: 2, blockSize: 16, scale: .uint(bits: 4, groupSize: 16, dtype: .bf16))),
        ("b4_B32_s2_G64_float16", QuantConfig(bits: 4, blockSize: 32, scale: .uint(bits: 2, groupSize: 64, dtype: .fp16))),
        ("b8_B64_s3_G16_bfloat16", QuantConfig(bits: 8, blockSize: 64, scale: .uint(bits: 3, groupSize: 16, dtype: .bf16))),
    ]

    @Test(arguments: configs.indices)
    func gridQuantizationMatchesTheReference(index: Int) throws {
        let (tag, config) = Self.configs[index]
        let input = try Self.file.floatTensor("input")
        let q = try Quantizer.quantize(input, config: config)
        let codes = (0..<q.count).map { UInt8(lq_get_code(q.codes, Int32(config.bits), Int64($0))) }
        expectIdentical(codes, Array(Self.file.bytes(of: try Self.file.entry("\(tag).codes"))), "\(tag) L\(#line)")
        guard case let .uint(scaleBits, _, _) = config.scale else { return }
        let scaleCodes = (0..<q.blockCount).map { UInt8(lq_get_code(q.scaleCodes, Int32(scaleBits), Int64($0))) }
        expectIdentical(scaleCodes, Array(Self.file.bytes(of: try Self.file.entry("\(tag).scale_codes"))), "\(tag) L\(#line)")
        expectIdentical(q.groupAbsmax, (try Self.file.floatTensor("\(tag).group_absmax").array), "\(tag) L\(#line)")
        expectIdentical([q.scaleOffset], (try Self.file.floatTensor("\(tag).offset").array), "\(tag) L\(#line)")
        let expected = try Self.file.floatTensor("\(tag).dequantized").array
        expectIdentical(q.dequantize(level: LQ_LEVEL_SCALAR).array, expected, "\(tag) L\(#line)")
        expectIdentical(q.dequantize(level: lq_best_level()).array, expected, "\(tag) L\(#line)")
    }
}
