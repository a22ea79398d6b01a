import CZlib

/// zlib's CRC-32 of a byte range (fed in chunks: zlib takes 32-bit lengths).
public func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var crc = CZlib.crc32(0, nil, 0)
    var offset = 0
    while offset < bytes.count {
        let n = min(bytes.count - offset, 1 << 30)
        crc = CZlib.crc32(crc, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: Bytef.self), uInt(n))
        offset += n
    }
    return UInt32(crc)
}

extension SafeTensorsFile {
    /// What identifies a tensor's content: dtype, shape and the CRC-32 of its stored bytes.
    public func fingerprint(of entry: TensorEntry) -> String {
        let crc = crc32(bytes(of: entry))
        return "\(entry.dtype.rawValue) \(entry.shape) crc32:\(String(crc, radix: 16))"
    }

    /// The shape a `fingerprint(of:)` names ("BF16 [576, 1536] crc32:…" → [576, 1536]).
    public static func shape(ofFingerprint fingerprint: String) -> [Int]? {
        guard let open = fingerprint.firstIndex(of: "["), let close = fingerprint.firstIndex(of: "]"), open < close else { return nil }
        let dims = fingerprint[fingerprint.index(after: open)..<close].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return dims.allSatisfy { $0 != nil } ? dims.map { $0! } : nil
    }
}

extension Checkpoint {
    public func fingerprint(_ name: String) throws -> String {
        let (file, entry) = try locate(name)
        return file.fingerprint(of: entry)
    }
}
