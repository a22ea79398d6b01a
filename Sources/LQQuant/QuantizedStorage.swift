import CKernels
import Foundation
import LQFormats
import LQTensor

public enum QuantStorageError: Error, CustomStringConvertible, Equatable {
    case missingPart(path: String, tensor: String)
    case badState(path: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .missingPart(path, tensor): return "\(path): quantized weight is missing its tensor '\(tensor)'"
        case let .badState(path, tensor, detail): return "\(path): tensor '\(tensor)': \(detail)"
        }
    }
}

/// How quantized matrices live in safetensors files.
///
/// NF4 with blocks of 64 uses the layout transformers + bitsandbytes save and load, for a weight `P.weight`:
/// `P.weight` (U8 [n/2, 1] codes), `P.weight.absmax` (U8 codes with double quantization, else F32),
/// `P.weight.quant_map` (F32 [16]), `P.weight.nested_absmax`, `P.weight.nested_quant_map` (F32 [256]),
/// `P.weight.quant_state.bitsandbytes__nf4` (U8 bytes of the JSON quant state).
///
/// Every other configuration uses lqlora's own layout, described in the file's `__metadata__` under
/// `lqlora.quant.P.weight` = `{"config": NAME, "shape": [rows, cols], "dtype": ORIGINAL}` with tensors
/// `P.weight.lq_codes` (U8, packed as lq_quant.h documents), `P.weight.lq_codebook` (F32),
/// and either `P.weight.lq_absmax` (F32 per block) or `P.weight.lq_scale_codes` (U8, packed),
/// `P.weight.lq_group_absmax` (F32, BF16 or F16 per group) and `P.weight.lq_scale_offset` (F32 [1]).
public enum QuantizedStorage {
    public static let bnbStateSuffix = ".quant_state.bitsandbytes__nf4"
    public static let metadataPrefix = "lqlora.quant."

    /// bitsandbytes' nested_blocksize: blocks per fp32 absmax of the double-quantized scales.
    static var bnbNestedBlockSize: Int { ScaleFormat.dynamic8.traits.groupSize! }

    /// torch's name for a stored dtype ("bfloat16", ...), as bitsandbytes records it.
    public static func torchName(_ d: DType) -> String { d.torchName ?? "float32" }

    /// The tensors that store `q` as the weight `name`, whose original dtype was `original`.
    public static func tensors(for q: QuantizedMatrix, name: String, original: DType) -> [PendingTensor] {
        let c = q.config
        func floats(_ suffix: String, _ values: [Float], _ dtype: DType = .f32) -> PendingTensor {
            PendingTensor(name: name + suffix, tensor: Tensor(shape: [values.count], values: values), dtype: dtype)
        }
        if c.isBitsandbytesCompatible {
            let state = Array(bnbState(q, original: original).utf8)
            var out = [
                PendingTensor(name: name, dtype: .u8, shape: [q.codes.count, 1], bytes: q.codes),
                floats(".quant_map", q.codebook),
                PendingTensor(name: name + bnbStateSuffix, dtype: .u8, shape: [state.count], bytes: state),
            ]
            if c.scale.traits.layout == .doubleQuantized {
                out += [PendingTensor(name: name + ".absmax", dtype: .u8, shape: [q.scaleCodes.count], bytes: q.scaleCodes),
                        floats(".nested_absmax", q.groupAbsmax), floats(".nested_quant_map", bitsandbytesDynamicMap)]
            } else {
                out.append(floats(".absmax", q.absmax))
            }
            return out
        }
        return layout(config: c, rows: q.rows, cols: q.cols, name: name).map { part, header in
            switch part {
            case .codes: return PendingTensor(header, bytes: q.codes)
            case .codebook: return PendingTensor(header, values: q.codebook)
            case .absmax: return PendingTensor(header, values: q.absmax)
            case .scaleCodes: return PendingTensor(header, bytes: q.scaleCodes)
            case .groupAbsmax: return PendingTensor(header, values: q.groupAbsmax)
            case .scaleOffset: return PendingTensor(header, values: [q.scaleOffset])
            }
        }
    }

    /// The parts of lqlora's own layout.
    enum Part {
        case codes, codebook, absmax, scaleCodes, groupAbsmax, scaleOffset
    }

    /// lqlora's own layout of a rows × cols weight `name` under `config`, each part's tensor as
    /// `tensors(for:)` writes it: the one statement of its names, dtypes and sizes.
    static func layout(config c: QuantConfig, rows: Int, cols: Int, name: String) -> [(Part, PlannedTensor)] {
        precondition(!c.isBitsandbytesCompatible, "\(c.name) is stored in the bitsandbytes layout")
        let t = c.scale.traits, n = Int64(rows * cols), blocks = (rows * cols + c.blockSize - 1) / c.blockSize
        func part(_ p: Part, _ suffix: String, _ dtype: DType, _ count: Int) -> (Part, PlannedTensor) {
            (p, PlannedTensor(name: name + suffix, dtype: dtype, shape: [count]))
        }
        var out = [part(.codes, ".lq_codes", .u8, lq_packed_bytes(Int32(c.bits), n)),
                   part(.codebook, ".lq_codebook", .f32, NormalFloat.codebook(bits: c.bits).count)]
        switch t.layout {
        case .perBlock:
            out.append(part(.absmax, ".lq_absmax", .f32, blocks))
        case .doubleQuantized:
            out += [part(.scaleCodes, ".lq_scale_codes", .u8, lq_packed_bytes(Int32(t.bits), Int64(blocks))),
                    part(.groupAbsmax, ".lq_group_absmax", t.dtype.stored, (blocks + t.groupSize! - 1) / t.groupSize!),
                    part(.scaleOffset, ".lq_scale_offset", .f32, 1)]
        }
        return out
    }

    /// The tensors and metadata that will store a rows × cols weight `name` under `config` in
    /// lqlora's own layout, before it is quantized: what the memory planner sizes. (The
    /// bitsandbytes layout's quant state holds a value, so its length is known only after.)
    public static func planned(config: QuantConfig, rows: Int, cols: Int, name: String, original: DType)
        -> (tensors: [PlannedTensor], metadata: [String: String]) {
        (layout(config: config, rows: rows, cols: cols, name: name).map(\.1),
         metadata(config: config, rows: rows, cols: cols, name: name, original: original))
    }

    /// The metadata entry lqlora's own layout needs (none for the bitsandbytes layout).
    public static func metadata(for q: QuantizedMatrix, name: String, original: DType) -> [String: String] {
        metadata(config: q.config, rows: q.rows, cols: q.cols, name: name, original: original)
    }

    static func metadata(config: QuantConfig, rows: Int, cols: Int, name: String, original: DType) -> [String: String] {
        if config.isBitsandbytesCompatible { return [:] }
        return [metadataPrefix + name: "{\"config\": \"\(config.name)\", \"shape\": [\(rows), \(cols)], \"dtype\": \"\(torchName(original))\"}"]
    }

    /// bitsandbytes' quant state JSON, with Python's json.dumps separators.
    static func bnbState(_ q: QuantizedMatrix, original: DType) -> String {
        var s = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"\(torchName(original))\", \"shape\": [\(q.rows), \(q.cols)]"
        if q.config.scale.traits.layout == .doubleQuantized {
            s += ", \"nested_blocksize\": \(bnbNestedBlockSize), \"nested_dtype\": \"float32\", \"nested_offset\": \(Double(q.scaleOffset))"
        }
        return s + "}"
    }

    /// Names of the weights stored quantized in `checkpoint`, in checkpoint order.
    public static func quantizedWeights(in checkpoint: Checkpoint) -> [String] {
        let ours = Set((checkpoint.metadata ?? [:]).keys.filter { $0.hasPrefix(metadataPrefix) }.map { String($0.dropFirst(metadataPrefix.count)) })
        var out: [String] = []
        for name in checkpoint.tensorNames {
            if name.hasSuffix(bnbStateSuffix) { out.append(String(name.dropLast(bnbStateSuffix.count))) }
            else if name.hasSuffix(".lq_codes"), ours.contains(String(name.dropLast(9))) { out.append(String(name.dropLast(9))) }
        }
        return out
    }

    static let partSuffixes = [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", bnbStateSuffix, ".lq_codes",
                               ".lq_codebook", ".lq_absmax", ".lq_scale_codes", ".lq_group_absmax", ".lq_scale_offset"]

    /// The quantized weight that `tensor` is a part of, if any.
    public static func owner(of tensor: String, in weights: Set<String>) -> String? {
        if weights.contains(tensor) { return tensor }
        for suffix in partSuffixes where tensor.hasSuffix(suffix) {
            let base = String(tensor.dropLast(suffix.count))
            if weights.contains(base) { return base }
        }
        return nil
    }

    /// The configuration and shape of quantized weight `name`, read from its description alone.
    public static func describe(_ name: String, in checkpoint: Checkpoint) throws -> (config: QuantConfig, shape: [Int]) {
        func bad(_ detail: String) -> QuantStorageError { .badState(path: checkpoint.path, tensor: name, detail: detail) }
        if checkpoint.contains(name + bnbStateSuffix) {
            let (file, entry) = try checkpoint.locate(name + bnbStateSuffix)
            guard let state = try? JSONSerialization.jsonObject(with: Data(file.bytes(of: entry))) as? [String: Any],
                  let shape = state["shape"] as? [Int] else { throw bad("unreadable quant state") }
            let doubleQuant = (try? checkpoint.entry(name + ".absmax"))?.dtype == .u8
            return (doubleQuant ? .nf4DoubleQuant : .plain(bits: 4), shape)
        }
        guard let json = checkpoint.metadata?[metadataPrefix + name],
              let info = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let c = (info["config"] as? String).flatMap(QuantConfig.parse), let shape = info["shape"] as? [Int]
        else { throw bad("no readable '\(metadataPrefix + name)' entry in the file metadata") }
        return (c, shape)
    }

    /// The quantized weight `name` and its original dtype.
    public static func load(_ name: String, from checkpoint: Checkpoint) throws -> (matrix: QuantizedMatrix, original: DType) {
        func part(_ suffix: String) throws -> (SafeTensorsFile, TensorEntry) {
            guard checkpoint.contains(name + suffix) else {
                throw QuantStorageError.missingPart(path: checkpoint.path, tensor: name + suffix)
            }
            return try checkpoint.locate(name + suffix)
        }
        func bytes(_ suffix: String) throws -> [UInt8] {
            let (f, e) = try part(suffix)
            return Array(f.bytes(of: e))
        }
        func floats(_ suffix: String) throws -> [Float] {
            let (f, e) = try part(suffix)
            return try f.floatTensor(e).array
        }
        func bad(_ detail: String) -> QuantStorageError { .badState(path: checkpoint.path, tensor: name, detail: detail) }

        if checkpoint.contains(name + bnbStateSuffix) {
            let stateBytes = try bytes(bnbStateSuffix)
            guard let state = try? JSONSerialization.jsonObject(with: Data(stateBytes)) as? [String: Any] else {
                throw bad("quant state is not a JSON object")
            }
            guard state["quant_type"] as? String == "nf4" else { throw bad("quant_type \(state["quant_type"] ?? "missing") is not supported (nf4 only)") }
            guard state["blocksize"] as? Int == 64 else { throw bad("blocksize \(state["blocksize"] ?? "missing") is not supported (64 only)") }
            guard let shape = state["shape"] as? [Int], shape.count == 2 else { throw bad("quant state has no 2-D shape") }
            let original = DType(torchName: state["dtype"] as? String ?? "") ?? .f32
            guard try floats(".quant_map") == NormalFloat.codebook(bits: 4) else { throw bad("quant_map is not the NF4 code") }
            let codes = try bytes("")
            let absmaxEntry = try part(".absmax").1
            if absmaxEntry.dtype == .u8 {
                guard state["nested_blocksize"] as? Int == bnbNestedBlockSize else { throw bad("nested_blocksize must be \(bnbNestedBlockSize)") }
                guard try floats(".nested_quant_map") == bitsandbytesDynamicMap else { throw bad("nested_quant_map is not bitsandbytes' dynamic map") }
                guard let offset = (state["nested_offset"] as? NSNumber)?.floatValue else { throw bad("quant state has no nested_offset") }
                let q = QuantizedMatrix(config: .nf4DoubleQuant, rows: shape[0], cols: shape[1], codes: codes,
                                        scaleCodes: try bytes(".absmax"), groupAbsmax: try floats(".nested_absmax"), scaleOffset: offset)
                return (q, original)
            }
            let q = QuantizedMatrix(config: .plain(bits: 4), rows: shape[0], cols: shape[1], codes: codes, absmax: try floats(".absmax"))
            return (q, original)
        }

        guard let json = checkpoint.metadata?[metadataPrefix + name],
              let info = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let configName = info["config"] as? String, let config = QuantConfig.parse(configName), config.isValid,
              let shape = info["shape"] as? [Int], shape.count == 2
        else { throw bad("no readable '\(metadataPrefix + name)' entry in the file metadata") }
        let original = DType(torchName: info["dtype"] as? String ?? "") ?? .f32
        let codes = try bytes(".lq_codes")
        guard codes.count == lq_packed_bytes(Int32(config.bits), Int64(shape[0] * shape[1])) else {
            throw bad("\(codes.count) code bytes do not fit \(shape) at \(config.bits) bits")
        }
        let q: QuantizedMatrix
        switch config.scale.traits.layout {
        case .perBlock:
            q = QuantizedMatrix(config: config, rows: shape[0], cols: shape[1], codes: codes, absmax: try floats(".lq_absmax"))
        case .doubleQuantized:
            q = QuantizedMatrix(config: config, rows: shape[0], cols: shape[1], codes: codes, scaleCodes: try bytes(".lq_scale_codes"),
                                groupAbsmax: try floats(".lq_group_absmax"), scaleOffset: try floats(".lq_scale_offset").first ?? 0)
        }
        guard q.codebook == (try floats(".lq_codebook")) else { throw bad("lq_codebook differs from the NF\(config.bits) code") }
        return (q, original)
    }

    /// config.json's `quantization_config` for a checkpoint whose targets use `configs`.
    public static func quantizationConfig(configs: Set<QuantConfig>, computeDType: DType, skipped: [String]) -> [String: Any] {
        if configs.count == 1, let c = configs.first, c.isBitsandbytesCompatible {
            return ["_load_in_4bit": true, "_load_in_8bit": false, "bnb_4bit_compute_dtype": torchName(computeDType),
                    "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": "nf4",
                    "bnb_4bit_use_double_quant": c.scale.traits.layout == .doubleQuantized, "llm_int8_enable_fp32_cpu_offload": false,
                    "llm_int8_has_fp16_weight": false, "llm_int8_skip_modules": skipped.isEmpty ? NSNull() : skipped,
                    "llm_int8_threshold": 6.0, "load_in_4bit": true, "load_in_8bit": false, "quant_method": "bitsandbytes"]
        }
        return ["quant_method": "lqlora", "format_version": 1, "configs": configs.map(\.name).sorted()]
    }
}

extension ScaleDType {
    /// The safetensors dtype its values are stored as.
    var stored: DType {
        switch self {
        case .fp32: return .f32
        case .bf16: return .bf16
        case .fp16: return .f16
        }
    }
}
