import Foundation
import LQFormats
import LQTensor
import Testing

struct SafeTensorsRoundTripTests {
    /// Raw little-endian bytes and the fp32 values they stand for, per dtype.
    static func sample(_ dtype: DType, count: Int) -> (bytes: [UInt8], values: [Float]) {
        var bytes: [UInt8] = []
        var values: [Float] = []
        func append<T>(_ v: T) { withUnsafeBytes(of: v) { bytes += $0 } }
        for i in 0..<count {
            let x = Float(i) * 0.75 - 3
            switch dtype {
            case .f64: append(Double(x)); values.append(x)
            case .f32: append(x); values.append(x)
            case .f16: append(Float16(x).bitPattern); values.append(Float(Float16(x)))
            case .bf16: append(UInt16(x.bitPattern >> 16)); values.append(Float(bitPattern: x.bitPattern & 0xffff_0000))
            case .i64: append(Int64(i) - 5); values.append(Float(i - 5))
            case .i32: append(Int32(i) * 1000 - 7); values.append(Float(i * 1000 - 7))
            case .i16: append(Int16(i) - 300); values.append(Float(i - 300))
            case .i8: append(Int8(truncatingIfNeeded: i - 100)); values.append(Float(Int8(truncatingIfNeeded: i - 100)))
            case .u8: append(UInt8(truncatingIfNeeded: i * 37)); values.append(Float(UInt8(truncatingIfNeeded: i * 37)))
            case .bool: append(UInt8(i % 3 == 0 ? 1 : 0)); values.append(i % 3 == 0 ? 1 : 0)
            default: fatalError("not sampled")
            }
        }
        return (bytes, values)
    }

    static let supported: [DType] = [.f64, .f32, .f16, .bf16, .i64, .i32, .i16, .i8, .u8, .bool]

    @Test(arguments: supported)
    func everySupportedDTypeRoundTrips(dtype: DType) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let shapes: [[Int]] = [[3, 5], [7], [], [0, 4], [2, 1, 3]]
        var pending: [PendingTensor] = []
        var expected: [String: (shape: [Int], bytes: [UInt8], values: [Float])] = [:]
        for (i, shape) in shapes.enumerated() {
            let s = Self.sample(dtype, count: shape.reduce(1, *))
            let name = "t\(i).weight"
            pending.append(PendingTensor(name: name, dtype: dtype, shape: shape, bytes: s.bytes))
            expected[name] = (shape, s.bytes, s.values)
        }
        let path = dir.file("x.safetensors")
        try SafeTensorsWriter.write(pending, to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.metadata == ["format": "pt"])
        #expect(file.dataStart % 8 == 0)
        #expect(Set(file.tensorNames) == Set(expected.keys))
        for (name, e) in expected {
            let entry = try file.entry(name)
            #expect(entry.dtype == dtype && entry.shape == e.shape)
            #expect(Array(file.bytes(of: entry)) == e.bytes)
            let t = try file.floatTensor(name)
            #expect(t.shape == e.shape && t.array == e.values)
        }
        #expect(dir.contents() == ["x.safetensors"])
    }

    @Test func fp32WritesFromTensorsAndNarrowsToHalfTypes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let t = Tensor(shape: [2, 3], values: [1, -2.5, 1e-3, 65504, 3.14159, -0.0])
        let path = dir.file("m.safetensors")
        try SafeTensorsWriter.write([
            PendingTensor(name: "a", tensor: t),
            PendingTensor(name: "b", tensor: t, dtype: .bf16),
            PendingTensor(name: "c", tensor: t, dtype: .f16),
        ], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(try file.floatTensor("a").array == t.array)
        #expect(try file.floatTensor("b").array == t.array.map { Float(bitPattern: UInt32(lqRoundBF16($0)) << 16) })
        #expect(try file.floatTensor("c").array == t.array.map { Float(Float16($0)) })
    }

    /// bf16 rounding oracle for this test: nearest, ties to even, via double arithmetic.
    func lqRoundBF16(_ v: Float) -> UInt16 {
        let lo = UInt16(v.bitPattern >> 16), hi = lo &+ 1
        let dl = abs(Double(Float(bitPattern: UInt32(lo) << 16)) - Double(v))
        let dh = abs(Double(Float(bitPattern: UInt32(hi) << 16)) - Double(v))
        return dl < dh || (dl == dh && lo & 1 == 0) ? lo : hi
    }

    @Test func alignedF32TensorsAreViewsOfTheMapping() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("v.safetensors")
        try SafeTensorsWriter.write([PendingTensor(name: "w", tensor: Tensor(shape: [4], values: [1, 2, 3, 4]))], to: path)
        let file = try SafeTensorsFile(path: path)
        let t = try file.floatTensor("w")
        #expect(UnsafeRawPointer(t.pointer) == file.bytes(of: try file.entry("w")).baseAddress)
        // Writes go to a private copy-on-write page, never to the file.
        t.pointer[0] = 99
        #expect(try SafeTensorsFile(path: path).floatTensor("w").array == [1, 2, 3, 4])
    }

    @Test func writerOrdersByElementSizeThenName() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("o.safetensors")
        try SafeTensorsWriter.write([
            PendingTensor(name: "z8", dtype: .u8, shape: [3], bytes: [1, 2, 3]),
            PendingTensor(name: "b32", dtype: .f32, shape: [1], bytes: [0, 0, 128, 63]),
            PendingTensor(name: "a16", dtype: .bf16, shape: [1], bytes: [128, 63]),
            PendingTensor(name: "a32", dtype: .f32, shape: [1], bytes: [0, 0, 0, 64]),
        ], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.entries.map(\.name) == ["a32", "b32", "a16", "z8"])
        #expect(SafeTensorsWriter.ordered([
            PendingTensor(name: "a", dtype: .i32, shape: [0], bytes: []),
            PendingTensor(name: "b", dtype: .f32, shape: [0], bytes: []),
            PendingTensor(name: "c", dtype: .i64, shape: [0], bytes: []),
        ]).map(\.name) == ["c", "b", "a"])
        for e in file.entries { #expect((file.dataStart + e.dataRange.lowerBound) % (e.dtype.bitSize / 8) == 0) }
    }

    @Test func duplicateNamesAreRejectedBeforeWriting() {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let t = PendingTensor(name: "w", dtype: .u8, shape: [1], bytes: [1])
        #expect(throws: SafeTensorsError.duplicateTensor(path: dir.file("d.safetensors"), tensor: "w")) {
            try SafeTensorsWriter.write([t, t], to: dir.file("d.safetensors"))
        }
        #expect(dir.contents().isEmpty)
    }

    @Test func aFailedWriteLeavesTheOldFileAndNoTemporary() throws {
        struct Boom: Error {}
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("keep.safetensors")
        try SafeTensorsWriter.write([PendingTensor(name: "old", dtype: .u8, shape: [1], bytes: [7])], to: path)
        let failing = PendingTensor(name: "new", dtype: .u8, shape: [4]) { _ in throw Boom() }
        #expect(throws: Boom.self) { try SafeTensorsWriter.write([failing], to: path) }
        #expect(dir.contents() == ["keep.safetensors"])
        #expect(try SafeTensorsFile(path: path).tensorNames == ["old"])
    }

    @Test func unsupportedDTypesAreListedButNotLoaded() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file("f8.safetensors")
        try craftSafetensors(header: #"{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#, buffer: [1, 2])
            .write(to: URL(fileURLWithPath: path))
        let file = try SafeTensorsFile(path: path)
        #expect(try file.entry("q").dtype == .f8e4m3)
        #expect(throws: SafeTensorsError.unsupportedDType(path: path, tensor: "q", dtype: "F8_E4M3")) { try file.floatTensor("q") }
        #expect(throws: SafeTensorsError.tensorNotFound(path: path, tensor: "nope")) { try file.entry("nope") }
    }
}

struct MalformedSafeTensorsTests {
    /// Each malformed file and the error it must raise (built with the file's path).
    static let corpus: [(name: String, data: Data, error: (String) -> SafeTensorsError)] = [
        ("short", Data([1, 2, 3, 4, 5]), { .fileTooSmall(path: $0, size: 5) }),
        ("huge-header", craftSafetensors(header: "{}", declaredLength: 100_000_001),
         { .headerTooLarge(path: $0, length: 100_000_001) }),
        ("header-past-end", craftSafetensors(header: "{}", declaredLength: 64),
         { .headerPastEnd(path: $0, length: 64, fileSize: 10) }),
        ("not-utf8", { var d = craftSafetensors(header: "{\"a\":1}"); d[9] = 0xff; return d }(),
         { .headerNotUTF8(path: $0) }),
        ("array-header", craftSafetensors(header: "[]"), { .headerShape(path: $0, detail: "the top level is not an object") }),
        ("truncated-json", craftSafetensors(header: #"{"x": {"dtype": "F32","#), { .headerNotJSON(path: $0) }),
        ("entry-not-object", craftSafetensors(header: #"{"x": 5}"#),
         { .headerShape(path: $0, detail: "tensor 'x': entry is not an object") }),
        ("metadata-not-strings", craftSafetensors(header: #"{"__metadata__": {"k": 1}}"#),
         { .metadataNotStrings(path: $0, key: "k") }),
        ("unknown-dtype", craftSafetensors(header: #"{"x":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}"#, buffer: [0]),
         { .unknownDType(path: $0, tensor: "x", dtype: "F7") }),
        ("negative-dim", craftSafetensors(header: #"{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#),
         { .headerShape(path: $0, detail: "tensor 'x': 'shape' holds -1, not a non-negative integer") }),
        ("fractional-offset", craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1.5]}}"#, buffer: [0]),
         { .headerShape(path: $0, detail: "tensor 'x': 'data_offsets' must be two non-negative integers") }),
        ("shape-overflow", craftSafetensors(header: #"{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, buffer: [0, 0, 0, 0]),
         { .sizeOverflow(path: $0, tensor: "x") }),
        ("bytes-overflow", craftSafetensors(header: #"{"x":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}}"#, buffer: [UInt8](repeating: 0, count: 8)),
         { .sizeOverflow(path: $0, tensor: "x") }),
        ("size-mismatch", craftSafetensors(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, buffer: [0, 0, 0, 0]),
         { .sizeMismatch(path: $0, tensor: "x", expected: 8, actual: 4) }),
        ("sub-byte", craftSafetensors(header: #"{"x":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#, buffer: [0, 0]),
         { .notWholeBytes(path: $0, tensor: "x") }),
        ("gap", craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#, buffer: [UInt8](repeating: 0, count: 8)),
         { .badOffsets(path: $0, tensor: "x") }),
        ("overlap", craftSafetensors(header: #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}"#, buffer: [UInt8](repeating: 0, count: 12)),
         { .badOffsets(path: $0, tensor: "b") }),
        ("backwards", craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}}"#, buffer: [UInt8](repeating: 0, count: 8)),
         { .badOffsets(path: $0, tensor: "x") }),
        ("trailing-bytes", craftSafetensors(header: #"{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, buffer: [1, 2, 3]),
         { .bufferNotCovered(path: $0, covered: 2, buffer: 3) }),
        ("missing-shape", craftSafetensors(header: #"{"x":{"dtype":"U8","data_offsets":[0,0]}}"#),
         { .headerShape(path: $0, detail: "tensor 'x': missing or non-array 'shape'") }),
    ]

    @Test(arguments: corpus.indices)
    func malformedFileIsRejectedWithItsError(index: Int) throws {
        let (name, data, error) = Self.corpus[index]
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let path = dir.file(name + ".safetensors")
        try data.write(to: URL(fileURLWithPath: path))
        #expect(throws: error(path), "\(name)") { try SafeTensorsFile(path: path) }
    }

    @Test func errorsNameTheFileAndTensor() {
        let message = SafeTensorsError.sizeMismatch(path: "/m/model.safetensors", tensor: "w.weight", expected: 8, actual: 4).description
        #expect(message.hasPrefix("/m/model.safetensors: ") && message.contains("'w.weight'"))
    }

    @Test func edgeCasesTheReferenceAccepts() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let cases: [(String, Data, Int)] = [
            ("empty", craftSafetensors(header: "{}"), 0),
            ("trailing-spaces", craftSafetensors(header: "{}      "), 0),
            ("leading-space", craftSafetensors(header: " {}"), 0),
            ("zero-elements", craftSafetensors(header: #"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#), 1),
            ("scalar", craftSafetensors(header: #"{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#, buffer: [0, 0, 128, 63]), 1),
            ("f4-pair", craftSafetensors(header: #"{"x":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#, buffer: [0x12]), 1),
        ]
        for (name, data, count) in cases {
            let path = dir.file(name + ".safetensors")
            try data.write(to: URL(fileURLWithPath: path))
            let file = try SafeTensorsFile(path: path)
            #expect(file.entries.count == count, "\(name)")
        }
        let scalar = try SafeTensorsFile(path: dir.file("scalar.safetensors")).floatTensor("s")
        #expect(scalar.shape == [] && scalar.array == [1])
    }
}
