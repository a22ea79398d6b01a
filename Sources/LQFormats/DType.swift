/// Element types of safetensors files, with the names the format uses, declared in the
/// reference implementation's order (its writer sorts tensors by this order, descending).
public enum DType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6e2m3 = "F6_E2M3"
    case f6e3m2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case f8e8m0 = "F8_E8M0"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Size of one element in bits (sub-byte for the F4/F6 types).
    public var bitSize: Int {
        switch self {
        case .f4: return 4
        case .f6e2m3, .f6e3m2: return 6
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3, .f8e8m0: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// torch's name for a floating type as config.json's torch_dtype spells it ("bfloat16"), nil for the rest.
    public var torchName: String? { [.bf16: "bfloat16", .f16: "float16", .f32: "float32", .f64: "float64"][self] }

    /// The floating type torch calls `name`.
    public init?(torchName name: String) {
        guard let t = [DType.bf16, .f16, .f32, .f64].first(where: { $0.torchName == name }) else { return nil }
        self = t
    }

    /// Position in the reference declaration order.
    public var order: Int { Self.allCases.firstIndex(of: self)! }

    /// Whether values of this type can be read as fp32 here; the rest are listed, not loaded.
    public var isSupported: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .i64, .i32, .i16, .i8, .u8, .bool: return true
        default: return false
        }
    }

    /// Byte size of `count` elements, or nil when it overflows or is not a whole number of bytes.
    public func byteCount(elements count: Int) -> Int? {
        let (bits, overflow) = count.multipliedReportingOverflow(by: bitSize)
        if overflow || bits % 8 != 0 { return nil }
        return bits / 8
    }
}
