import Foundation
import LQFormats
import LQQuant
import LQTensor
import Testing

/// AutoGPTQ's checkpoint layout: our packing of the fixture's quantizations is AutoGPTQ's
/// QuantLinear.pack byte for byte (2/3/4/8 bits, act-order g_idx), and loading those tensors from a
/// model directory gives back the codes, scales and zero points.
struct GPTQFormatTests {
    static func fixtureQuantization(bits: Int) throws -> UniformQuantization {
        let f = GPTQTests.file, key = "a.b\(bits).g128.sym.act"
        let codes = try f.floatTensor(key + ".codes"), scales = try f.floatTensor(key + ".scale")
        let zeros = try f.floatTensor(key + ".zero"), g = try f.floatTensor(key + ".g_idx")
        return UniformQuantization(quantizer: UniformQuantizer(bits: bits, symmetric: true), rows: codes.shape[0], cols: codes.shape[1],
                                   groupSize: 128, codes: codes.array.map { UInt8($0) }, scales: scales.array, zeros: zeros.array,
                                   groupIndex: g.array.map { Int32($0) })
    }

    static func bytes(_ t: PendingTensor) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: t.byteCount)
        try out.withUnsafeMutableBytes { try t.fill($0) }
        return out
    }

    @Test(arguments: [2, 3, 4, 8])
    func packingIsAutoGPTQsByteForByte(bits: Int) throws {
        let q = try Self.fixtureQuantization(bits: bits)
        let tensors = try GPTQFormat.tensors(q, module: "m")
        let f = GPTQTests.file
        for t in tensors {
            let suffix = String(t.name.dropFirst(2))
            let e = try f.entry("pack.a.b\(bits).g128.sym.act." + suffix)
            #expect(t.shape == e.shape, "\(suffix): shape \(t.shape) vs \(e.shape)")
            #expect(try Self.bytes(t) == Array(f.bytes(of: e)), "\(bits) bits: \(suffix) differs from AutoGPTQ's")
        }
    }

    @Test(arguments: [2, 3, 4, 8])
    func loadingGivesTheQuantizationBack(bits: Int) throws {
        let q = try Self.fixtureQuantization(bits: bits)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gptq-load-\(bits)-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SafeTensorsWriter.write(try GPTQFormat.tensors(q, module: "m"), to: dir + "/model.safetensors")
        let settings = GPTQFormat.Settings(bits: bits, groupSize: 128, descAct: true, symmetric: true)
        try ModelFiles.writeJSON(["model_type": "llama", "quantization_config": settings.json], to: dir + "/config.json")
        let checkpoint = try Checkpoint(path: dir)
        let read = try GPTQFormat.Settings(modelConfig: try checkpoint.config()!, path: dir)
        #expect(read == settings)
        let loaded = try GPTQFormat.load("m", from: checkpoint, settings: settings)
        #expect(loaded.codes == q.codes && loaded.zeros == q.zeros && loaded.groupIndex == q.groupIndex)
        #expect(loaded.scales == q.scales.map { Float(Float16($0)) })
        let w = loaded.dequantized(), ref = q.withHalfScales().dequantized()
        #expect(w.array == ref.array)
    }

    @Test func badCheckpointsAreNamed() throws {
        let path = "x/config.json"
        #expect(throws: GPTQFormatError.badConfig(path: path, key: "quantization_config.bits", detail: "is 5; GPTQ checkpoints of 2, 3, 4 or 8 bits load")) {
            _ = try GPTQFormat.Settings(modelConfig: ["quantization_config": ["quant_method": "gptq", "bits": 5]], path: path)
        }
        #expect(try GPTQFormat.Settings(modelConfig: ["quantization_config": ["quant_method": "bitsandbytes"]], path: path) == nil)
        let q = try Self.fixtureQuantization(bits: 4)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gptq-bad-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try SafeTensorsWriter.write(try GPTQFormat.tensors(q, module: "m").filter { !$0.name.hasSuffix("qzeros") }, to: dir + "/model.safetensors")
        let checkpoint = try Checkpoint(path: dir)
        #expect(throws: GPTQFormatError.missingTensor(path: checkpoint.path, tensor: "m.qzeros")) {
            _ = try GPTQFormat.load("m", from: checkpoint, settings: GPTQFormat.Settings(bits: 4, groupSize: 128, descAct: true, symmetric: true))
        }
    }
}
