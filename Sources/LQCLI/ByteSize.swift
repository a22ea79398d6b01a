import ArgumentParser
import Foundation

/// A size on the command line: "2GiB", "1.5 GB", "700MiB", "4096" (bytes). Binary units (KiB, MiB,
/// GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers of 1000.
struct ByteSize: ExpressibleByArgument, Equatable {
    let bytes: Int64

    static let units: [(String, Double)] = [
        ("TiB", 0x1p40), ("GiB", 0x1p30), ("MiB", 0x1p20), ("KiB", 0x1p10),
        ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1),
    ]

    init(bytes: Int64) { self.bytes = bytes }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        let (unit, scale) = Self.units.first { text.lowercased().hasSuffix($0.0.lowercased()) } ?? ("", 1)
        guard let value = Double(text.dropLast(unit.count).trimmingCharacters(in: .whitespaces)), value.isFinite, value > 0,
              value * scale < 9e18 else { return nil }
        bytes = Int64((value * scale).rounded(.down))
    }
}
