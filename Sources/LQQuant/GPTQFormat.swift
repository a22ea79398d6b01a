import Foundation
import LQFormats
import LQTensor

/// AutoGPTQ's checkpoint layout (checkpoint_format "gptq", v1), as transformers, AutoGPTQ and
/// GPTQModel load it. Per quantized linear `P`:
/// - `P.qweight` I32 [in·bits/32, out]: each output's column of codes as one little-endian bit
///   stream over the inputs (3-bit: 32 values in 3 words, values crossing word boundaries);
/// - `P.qzeros` I32 [groups, out·bits/32]: zero − 1 per group and output, packed the same way
///   along the outputs (v1's offset; "gptq_v2" stores the zero itself);
/// - `P.scales` F16 [groups, out]; `P.g_idx` I32 [in]: each input's group.
/// config.json's quantization_config says bits, group_size (−1: one group), desc_act and sym.
/// lqlora's own variant (Layout.lqlora) stores fp16 `P.zeros` [groups, out] in place of qzeros.
public enum GPTQFormat {
    public static let suffixes = ["qweight", "qzeros", "zeros", "scales", "g_idx"]

    /// Where the zero points go: AutoGPTQ's packed `qzeros` (what transformers, AutoGPTQ and
    /// GPTQModel read), or lqlora's own fp16 `zeros` (quant_method "lqlora_uniform", which GPTQ
    /// loaders do not read): exact for fractional zero points (L4Q's learned offsets) and for an
    /// asymmetric zero point of 0, which v1's zero − 1 cannot store.
    public enum Layout: String, CaseIterable, Sendable {
        case gptq, lqlora
    }

    /// The settings of a GPTQ checkpoint's quantization_config.
    public struct Settings: Sendable, Equatable {
        public var bits: Int
        /// nil: one group per row (group_size −1).
        public var groupSize: Int?
        public var descAct: Bool
        public var symmetric: Bool
        public var damp: Double
        public var trueSequential: Bool
        /// AutoGPTQ's static_groups (the groups' quantizers from the original weight).
        public var staticGroups: Bool
        /// v2 stores zero points as they are; v1 (the default) stores zero − 1 (the gptq layout only).
        public var zeroOffset: Int
        public var layout: Layout

        public init(bits: Int, groupSize: Int?, descAct: Bool, symmetric: Bool, damp: Double = 0.1, trueSequential: Bool = true,
                    staticGroups: Bool = false, zeroOffset: Int = 1, layout: Layout = .gptq) {
            self.staticGroups = staticGroups
            self.layout = layout
            self.bits = bits
            self.groupSize = groupSize
            self.descAct = descAct
            self.symmetric = symmetric
            self.damp = damp
            self.trueSequential = trueSequential
            self.zeroOffset = zeroOffset
        }

        /// quantization_config as transformers' GPTQConfig writes it (lqlora's layout: its own method
        /// name and the settings it loads by).
        public var json: [String: Any] {
            if layout == .lqlora {
                return ["quant_method": Self.lqloraMethod, "bits": bits, "group_size": groupSize ?? -1, "zero_points": "fp16", "sym": symmetric,
                        "desc_act": descAct]
            }
            return ["quant_method": "gptq", "bits": bits, "group_size": groupSize ?? -1, "desc_act": descAct, "sym": symmetric,
             "damp_percent": damp, "true_sequential": trueSequential, "checkpoint_format": zeroOffset == 1 ? "gptq" : "gptq_v2",
             "static_groups": staticGroups, "use_exllama": false]
        }

        /// quant_method of lqlora's layout.
        public static let lqloraMethod = "lqlora_uniform"

        /// A name for reports: "gptq-b4-g128-sym", "-act" with act-order; "uniform-b4-g128-fp16zero" in lqlora's layout.
        public var name: String {
            if layout == .lqlora { return "uniform-b\(bits)-g\(groupSize.map(String.init) ?? "row")-fp16zero" }
            return "gptq-b\(bits)-g\(groupSize.map(String.init) ?? "row")-\(symmetric ? "sym" : "asym")\(descAct ? "-act" : "")"
        }

        /// The integer zero points the gptq layout reads back as written. v1 stores zero − 1 in `bits`
        /// bits, so a zero point of 0 is stored as 2^bits − 1: this reader takes that for 2^bits, and
        /// GPTQModel's v1 → v2 conversion (one addition over each packed word) carries it into the
        /// next row's zero point. v2 stores 0...maxq as they are.
        public var storableZeros: ClosedRange<Int> { zeroOffset...((1 << bits) - 1) }

        /// Bits of one zero point: packed as the codes (gptq), or fp16 (lqlora).
        var zeroBits: Int { layout == .lqlora ? 16 : bits }

        /// Storage bits per weight for an input width: the code plus a group's fp16 scale and zero point.
        public func bitsPerParameter(columns: Int) -> Double {
            let gs = Double(groupSize ?? columns)
            return Double(bits) + Double(16 + zeroBits) / gs
        }

        /// Bits `q` takes stored so: its codes, and an fp16 scale and a zero point per group and row.
        public func storedBits(_ q: UniformQuantization) -> Int {
            q.rows * q.cols * bits + q.groupCount * q.rows * (16 + zeroBits)
        }

        /// quantize_config.json as AutoGPTQ writes it beside the weights.
        public var quantizeConfigJSON: [String: Any] {
            ["bits": bits, "group_size": groupSize ?? -1, "desc_act": descAct, "sym": symmetric, "damp_percent": damp,
             "true_sequential": trueSequential, "static_groups": staticGroups, "model_file_base_name": "model", "quant_method": "gptq",
             "checkpoint_format": zeroOffset == 1 ? "gptq" : "gptq_v2"]
        }

        /// The settings of a model directory's config.json, nil when it is not a GPTQ checkpoint.
        public init?(modelConfig json: [String: Any], path: String) throws {
            guard let q = json["quantization_config"] as? [String: Any], let method = (q["quant_method"] as? String)?.lowercased(),
                  method == "gptq" || method == Self.lqloraMethod else { return nil }
            func bad(_ key: String, _ detail: String) -> GPTQFormatError { .badConfig(path: path, key: "quantization_config." + key, detail: detail) }
            guard let bits = (q["bits"] as? NSNumber)?.intValue else { throw bad("bits", "is missing") }
            guard [2, 3, 4, 8].contains(bits) else { throw bad("bits", "is \(bits); GPTQ checkpoints of 2, 3, 4 or 8 bits load") }
            let group = (q["group_size"] as? NSNumber)?.intValue ?? -1
            guard group == -1 || group > 0 else { throw bad("group_size", "is \(group): −1 or a positive column count") }
            let format = (q["checkpoint_format"] as? String) ?? "gptq"
            guard format == "gptq" || format == "gptq_v2" else { throw bad("checkpoint_format", "is '\(format)' (gptq or gptq_v2 load)") }
            self.init(bits: bits, groupSize: group == -1 ? nil : group, descAct: q["desc_act"] as? Bool ?? false,
                      symmetric: q["sym"] as? Bool ?? true, damp: (q["damp_percent"] as? NSNumber)?.doubleValue ?? 0.1,
                      trueSequential: q["true_sequential"] as? Bool ?? true, staticGroups: q["static_groups"] as? Bool ?? false, zeroOffset: format == "gptq" ? 1 : 0,
                      layout: method == Self.lqloraMethod ? .lqlora : .gptq)
        }
    }

    /// Packs `values` (each below 2^bits) as one little-endian bit stream of 32-bit words.
    static func packStream(_ values: (Int) -> UInt32, count: Int, bits: Int, into words: UnsafeMutablePointer<UInt32>, stride: Int) {
        let mask = UInt32((1 << bits) - 1)
        for j in 0..<count {
            let v = values(j) & mask, bit = j * bits, w = bit / 32, off = bit % 32
            words[w * stride] |= v << UInt32(off)
            if off + bits > 32 { words[(w + 1) * stride] |= v >> UInt32(32 - off) }
        }
    }

    static func unpackStream(_ words: UnsafePointer<UInt32>, stride: Int, index j: Int, bits: Int) -> UInt32 {
        let mask = UInt32((1 << bits) - 1), bit = j * bits, w = bit / 32, off = bit % 32
        var v = words[w * stride] >> UInt32(off)
        if off + bits > 32 { v |= words[(w + 1) * stride] << UInt32(32 - off) }
        return v & mask
    }

    /// The four tensors of `q` under `module` ("model.layers.0.self_attn.q_proj") in `layout`, packed
    /// zero points stored with `zeroOffset` (1: v1's zero − 1).
    public static func tensors(_ q: UniformQuantization, module: String, zeroOffset: Int = 1, layout: Layout = .gptq) throws -> [PendingTensor] {
        let bits = q.quantizer.bits, rows = q.rows, cols = q.cols, groups = q.groupCount
        guard (cols * bits) % 32 == 0, layout == .lqlora || (rows * bits) % 32 == 0 else {
            throw GPTQFormatError.unpackable(tensor: module, detail: "[\(rows), \(cols)] at \(bits) bits does not pack into 32-bit words")
        }
        var qweight = [UInt32](repeating: 0, count: cols * bits / 32 * rows)
        qweight.withUnsafeMutableBufferPointer { words in
            for o in 0..<rows { packStream({ UInt32(q.codes[o * cols + $0]) }, count: cols, bits: bits, into: words.baseAddress! + o, stride: rows) }
        }
        let zw = rows * bits / 32
        var qzeros = [UInt32](repeating: 0, count: layout == .gptq ? groups * zw : 0)
        if layout == .gptq { qzeros.withUnsafeMutableBufferPointer { words in
            for g in 0..<groups {
                // v1 stores zero − 1 (a zero point of 0 cannot be stored: it reads back as 2^bits, as in AutoGPTQ).
                packStream({ UInt32(truncatingIfNeeded: Int(q.zeros[g * rows + $0]) - zeroOffset) }, count: rows, bits: bits,
                           into: words.baseAddress! + g * zw, stride: 1)
            }
        } }
        let scales = q.scales.map { Float16($0).bitPattern }
        func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }
        let zeros = layout == .lqlora
            ? PendingTensor(name: module + ".zeros", dtype: .f16, shape: [groups, rows], bytes: bytes(q.zeros.map { Float16($0).bitPattern }))
            : PendingTensor(name: module + ".qzeros", dtype: .i32, shape: [groups, zw], bytes: bytes(qzeros))
        return [
            PendingTensor(name: module + ".qweight", dtype: .i32, shape: [cols * bits / 32, rows], bytes: bytes(qweight)),
            zeros,
            PendingTensor(name: module + ".scales", dtype: .f16, shape: [groups, rows], bytes: bytes(scales)),
            PendingTensor(name: module + ".g_idx", dtype: .i32, shape: [cols], bytes: bytes(q.groupIndex)),
        ]
    }

    /// The modules stored as GPTQ tensors ("model.layers.0.self_attn.q_proj"), in checkpoint order.
    public static func modules(in checkpoint: Checkpoint) -> [String] {
        checkpoint.tensorNames.filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(".qweight".count)) }
    }

    /// The module whose GPTQ parts include tensor `name`, if any.
    public static func owner(of name: String, in modules: Set<String>) -> String? {
        for suffix in suffixes where name.hasSuffix("." + suffix) {
            let module = String(name.dropLast(suffix.count + 1))
            if modules.contains(module) { return module }
        }
        return nil
    }

    /// [out, in] of a GPTQ module, from its qweight's shape.
    public static func shape(of module: String, in checkpoint: Checkpoint, bits: Int) throws -> [Int] {
        let e = try checkpoint.entry(module + ".qweight")
        guard e.shape.count == 2 else { throw GPTQFormatError.badTensor(path: checkpoint.path, tensor: e.name, detail: "must be 2-D, is \(e.shape)") }
        return [e.shape[1], e.shape[0] * 32 / bits]
    }

    /// Whether `module`'s weight is stored as GPTQ tensors in `checkpoint`.
    public static func contains(_ module: String, in checkpoint: Checkpoint) -> Bool {
        checkpoint.contains(module + ".qweight")
    }

    /// Loads `module`'s GPTQ tensors: [out, in] is read from qweight and scales, every shape checked.
    public static func load(_ module: String, from checkpoint: Checkpoint, settings s: Settings) throws -> UniformQuantization {
        let zeroName = s.layout == .lqlora ? "zeros" : "qzeros"
        for suffix in ["qweight", zeroName, "scales"] where !checkpoint.contains(module + "." + suffix) {
            throw GPTQFormatError.missingTensor(path: checkpoint.path, tensor: module + "." + suffix)
        }
        let (qwFile, qwEntry) = try checkpoint.locate(module + ".qweight")
        let (qzFile, qzEntry) = try checkpoint.locate(module + "." + zeroName)
        let (scFile, scEntry) = try checkpoint.locate(module + ".scales")
        let bits = s.bits
        func bad(_ e: TensorEntry, _ detail: String) -> GPTQFormatError { .badTensor(path: checkpoint.path, tensor: e.name, detail: detail) }
        guard qwEntry.shape.count == 2, [.i32, .u32].contains(qwEntry.dtype) else { throw bad(qwEntry, "must be a 2-D int32 tensor, is \(qwEntry.dtype.rawValue) \(qwEntry.shape)") }
        let rows = qwEntry.shape[1], cols = qwEntry.shape[0] * 32 / bits
        guard qwEntry.shape[0] * 32 % bits == 0 else { throw bad(qwEntry, "\(qwEntry.shape[0]) words do not hold whole \(bits)-bit codes") }
        let gs = s.groupSize ?? cols
        let groups = (cols + gs - 1) / gs
        guard scEntry.shape == [groups, rows], [.f16, .bf16, .f32].contains(scEntry.dtype) else {
            throw bad(scEntry, "must be [\(groups), \(rows)] fp16 (group size \(gs) over \(cols) inputs), is \(scEntry.dtype.rawValue) \(scEntry.shape)")
        }
        if s.layout == .lqlora {
            guard qzEntry.shape == [groups, rows], [.f16, .f32].contains(qzEntry.dtype) else {
                throw bad(qzEntry, "must be [\(groups), \(rows)] fp16, is \(qzEntry.dtype.rawValue) \(qzEntry.shape)")
            }
        } else {
            guard qzEntry.shape == [groups, rows * bits / 32], [.i32, .u32].contains(qzEntry.dtype) else {
                throw bad(qzEntry, "must be [\(groups), \(rows * bits / 32)] int32, is \(qzEntry.dtype.rawValue) \(qzEntry.shape)")
            }
        }
        var gIdx = (0..<cols).map { Int32($0 / gs) }
        if checkpoint.contains(module + ".g_idx") {
            let (gf, ge) = try checkpoint.locate(module + ".g_idx")
            guard ge.shape == [cols], [.i32, .i64].contains(ge.dtype) else { throw bad(ge, "must be [\(cols)] integers, is \(ge.dtype.rawValue) \(ge.shape)") }
            let values = try gf.floatTensor(ge)
            gIdx = values.array.map { Int32($0) }
            if let outside = gIdx.first(where: { $0 < 0 || Int($0) >= groups }) { throw bad(ge, "has group \(outside) outside 0..<\(groups)") }
        }
        let qw = qwFile.bytes(of: qwEntry), qz = qzFile.bytes(of: qzEntry)
        var codes = [UInt8](repeating: 0, count: rows * cols)
        let words = words32(qw)
        words.withUnsafeBufferPointer { w in
            for o in 0..<rows {
                for c in 0..<cols { codes[o * cols + c] = UInt8(unpackStream(w.baseAddress! + o, stride: rows, index: c, bits: bits)) }
            }
        }
        var zeros = [Float](repeating: 0, count: groups * rows)
        if s.layout == .lqlora {
            zeros = try qzFile.floatTensor(qzEntry).array
            if let bad = zeros.first(where: { !$0.isFinite }) { throw GPTQFormatError.badTensor(path: checkpoint.path, tensor: qzEntry.name, detail: "holds \(bad)") }
        }
        let zwords = s.layout == .lqlora ? [] : words32(qz), zw = rows * bits / 32
        if s.layout == .gptq { zwords.withUnsafeBufferPointer { w in
            for g in 0..<groups {
                for o in 0..<rows { zeros[g * rows + o] = Float(Int(unpackStream(w.baseAddress! + g * zw, stride: 1, index: o, bits: bits)) + s.zeroOffset) }
            }
        } }
        let scales = try scFile.floatTensor(scEntry).array
        return UniformQuantization(quantizer: UniformQuantizer(bits: bits, symmetric: s.symmetric), rows: rows, cols: cols, groupSize: gs,
                                   codes: codes, scales: scales, zeros: zeros, groupIndex: gIdx)
    }

    /// The 32-bit words of a mapped tensor (copied: the mapping need not be 4-byte aligned).
    static func words32(_ raw: UnsafeRawBufferPointer) -> [UInt32] {
        let count = raw.count / 4
        var words = [UInt32](repeating: 0, count: count)
        words.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[0..<(count * 4)])) }
        return words
    }

    /// The tensors of the quantized weight `name` ("….q_proj.weight") as `settings` store them.
    public static func tensors(_ q: UniformQuantization, weight name: String, settings: Settings) throws -> [PendingTensor] {
        try tensors(q, module: String(name.dropLast(".weight".count)), zeroOffset: settings.zeroOffset, layout: settings.layout)
    }

    /// A GPTQ model directory from a dense checkpoint: every quantized module's four tensors in place
    /// of its weight, the other tensors copied byte for byte (see the other `write`). `quantized` is
    /// keyed by weight name ("….q_proj.weight").
    public static func write(from checkpoint: Checkpoint, quantized: [String: UniformQuantization], settings: Settings,
                             modelConfig: [String: Any], to directory: String) throws {
        let pending = try checkpoint.tensorNames.flatMap { name -> [PendingTensor] in
            if let q = quantized[name] { return try tensors(q, weight: name, settings: settings) }
            let (file, entry) = try checkpoint.locate(name)
            return [ModelFiles.copied(entry, from: file)]
        }
        try write(pending, settings: settings, modelConfig: modelConfig, sideFilesFrom: checkpoint.directory, to: directory)
    }

    /// A GPTQ model directory of `pending` (the quantized modules' tensors among the others):
    /// config.json with quantization_config, quantize_config.json (the gptq layout) and the side
    /// files (tokenizer, generation config) of `source`.
    public static func write(_ pending: [PendingTensor], settings: Settings, modelConfig: [String: Any], sideFilesFrom source: String,
                             to directory: String) throws {
        try CheckpointWriter.write(pending, toDirectory: directory, metadata: SafeTensorsWriter.defaultMetadata)
        var config = modelConfig
        config["quantization_config"] = settings.json
        try ModelFiles.writeJSON(config, to: directory + "/config.json")
        if settings.layout == .gptq { try ModelFiles.writeJSON(settings.quantizeConfigJSON, to: directory + "/quantize_config.json") }
        try ModelFiles.copySideFiles(from: source, to: directory)
    }
}

public enum GPTQFormatError: Error, CustomStringConvertible, Equatable {
    case badConfig(path: String, key: String, detail: String)
    case missingTensor(path: String, tensor: String)
    case badTensor(path: String, tensor: String, detail: String)
    case unpackable(tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .badConfig(path, key, detail): return "\(path): \(key) \(detail)"
        case let .missingTensor(path, tensor): return "\(path): GPTQ tensor '\(tensor)' is missing"
        case let .badTensor(path, tensor, detail): return "\(path): '\(tensor)' \(detail)"
        case let .unpackable(tensor, detail): return "\(tensor): \(detail)"
        }
    }
}
