import Foundation

/// Bytes sent between ranks: integers, doubles, floats and byte strings in a fixed order,
/// little-endian, each array after its length. Writer and reader are the same build.
public struct Packet {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func append(_ value: Int) { appendWord(UInt64(bitPattern: Int64(value))) }
    public mutating func append(_ value: Double) { appendWord(value.bitPattern) }
    public mutating func append(_ value: Float) { append(Double(value)) }

    public mutating func append(_ data: [UInt8]) {
        append(data.count)
        bytes += data
    }

    public mutating func append(_ values: UnsafeBufferPointer<Float>) {
        append(values.count)
        bytes += UnsafeRawBufferPointer(values)
    }

    public mutating func append(_ values: [Float]) { values.withUnsafeBufferPointer { append($0) } }
    public mutating func append(_ values: [Double]) {
        append(values.count)
        for v in values { append(v) }
    }

    private mutating func appendWord(_ w: UInt64) {
        withUnsafeBytes(of: w.littleEndian) { bytes += $0 }
    }

    /// Reads a packet back in the order it was written.
    public struct Reader {
        let data: [UInt8]
        var offset = 0

        public init(_ bytes: [UInt8]) { data = bytes }

        public var isAtEnd: Bool { offset == data.count }

        public mutating func int() throws -> Int { Int(Int64(bitPattern: try word())) }
        public mutating func double() throws -> Double { Double(bitPattern: try word()) }
        public mutating func float() throws -> Float { Float(try double()) }

        public mutating func bytes() throws -> [UInt8] {
            let n = try count(of: 1)
            defer { offset += n }
            return Array(data[offset..<(offset + n)])
        }

        public mutating func floats() throws -> [Float] {
            let n = try count(of: MemoryLayout<Float>.size)
            var out = [Float](repeating: 0, count: n)
            out.withUnsafeMutableBytes { $0.copyBytes(from: data[offset..<(offset + 4 * n)]) }
            offset += 4 * n
            return out
        }

        public mutating func doubles() throws -> [Double] {
            let n = try count(of: 8)
            return try (0..<n).map { _ in try double() }
        }

        private mutating func count(of width: Int) throws -> Int {
            let n = try int()
            guard n >= 0, n <= (data.count - offset) / width else { throw ClusterError.malformed(detail: "an array of \(n) runs past the packet's \(data.count) bytes") }
            return n
        }

        private mutating func word() throws -> UInt64 {
            guard data.count - offset >= 8 else { throw ClusterError.malformed(detail: "a value runs past the packet's \(data.count) bytes") }
            var w: UInt64 = 0
            withUnsafeMutableBytes(of: &w) { $0.copyBytes(from: data[offset..<(offset + 8)]) }
            offset += 8
            return UInt64(littleEndian: w)
        }
    }
}
