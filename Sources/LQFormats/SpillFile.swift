import Foundation

/// A scratch file that holds tensors already made while the rest of a checkpoint is being made, so
/// that the output's bytes wait on disk (in the page cache, which the kernel can write back and
/// drop) instead of in anonymous memory: quantizing a 7B model would otherwise hold its whole
/// quantized output, 3.5 GB at 4 bits, until the safetensors writer, which must order tensors by
/// dtype and name, asks for them. Lives in the output's staging directory and is removed with it.
public final class SpillFile {
    public let path: String
    private let handle: FileHandle
    private var length = 0
    /// Tensors of fewer bytes stay in memory: spilling them saves nothing.
    public let threshold: Int

    public init(directory: String, threshold: Int = 1 << 20) throws {
        self.threshold = threshold
        path = directory + "/.spill-\(getpid())"
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw SafeTensorsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        do { handle = try FileHandle(forUpdating: URL(fileURLWithPath: path)) } catch {
            throw SafeTensorsError.writeFailed(path: path, reason: FileSystemFailure.reason(error))
        }
    }

    deinit { remove() }

    /// Deletes the file (before the staging directory is committed); the spilled tensors are gone with it.
    public func remove() {
        try? handle.close()
        try? FileManager.default.removeItem(atPath: path)
    }

    /// `tensor` itself when small; otherwise its bytes are made now, written here, and the returned
    /// tensor reads them back when the writer asks.
    public func spilled(_ tensor: PendingTensor) throws -> PendingTensor {
        let n = tensor.byteCount
        guard n >= threshold else { return tensor }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 64)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        try tensor.fill(buffer)
        let offset = length
        do {
            try handle.seek(toOffset: UInt64(offset))
            try handle.write(contentsOf: Data(bytesNoCopy: buffer.baseAddress!, count: n, deallocator: .none))
        } catch {
            throw SafeTensorsError.writeFailed(path: path, reason: FileSystemFailure.reason(error))
        }
        length += n
        let path = self.path, handle = self.handle
        return PendingTensor(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape) { raw in
            do {
                try handle.seek(toOffset: UInt64(offset))
                guard let data = try handle.read(upToCount: n), data.count == n else {
                    throw SafeTensorsError.writeFailed(path: path, reason: "the scratch file is shorter than what was written to it")
                }
                data.withUnsafeBytes { raw.copyMemory(from: $0) }
            } catch let error as SafeTensorsError {
                throw error
            } catch {
                throw SafeTensorsError.writeFailed(path: path, reason: FileSystemFailure.reason(error))
            }
        }
    }
}
