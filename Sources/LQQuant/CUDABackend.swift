import CKernels
import Foundation
import LQFormats

/// Where quantized matrix products run: `cpu`, `cuda` (fail when no GPU library or device), or
/// `auto` (CUDA when liblqlora_cuda.so and a device are present, else the CPU).
public enum ComputeDevice: String, CaseIterable, Sendable {
    case cpu, cuda, auto
}

public struct CUDAUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "--device cuda: \(reason)" }
}

/// liblqlora_cuda.so (lq_cuda.h), found at run time. Quantized matrices upload themselves on their
/// first product and then multiply on the device (activations crossing per product), unless a whole
/// forward pass runs there (DeviceLlama), when activations stay on the device between layers.
public final class CUDABackend: @unchecked Sendable {
    let api: lq_cuda_api

    /// A backend over an API table: the loader's, or a stand-in's (the tests' host emulation).
    public init(api: lq_cuda_api) { self.api = api }

    /// The backend products use in this process; nil means the CPU kernels.
    public static var active: CUDABackend? {
        activeLock.lock()
        defer { activeLock.unlock() }
        return activeBackend
    }
    nonisolated(unsafe) private static var activeBackend: CUDABackend?
    private static let activeLock = NSLock()

    private static func setActive(_ backend: CUDABackend?) {
        activeLock.lock()
        activeBackend = backend
        activeLock.unlock()
    }

    /// Stops using the GPU for the rest of the process after a failed call, saying why once: a
    /// device that failed once is not trusted with the next product.
    public static func abandon(_ reason: String) {
        setActive(nil)
        WarnOnce.say("warning: \(reason); continuing on the CPU")
    }

    /// Loads the library once per process: the backend, or why there is none.
    public static let loaded: Result<CUDABackend, CUDAUnavailable> = {
        var why = [CChar](repeating: 0, count: 1600)
        guard let api = lq_cuda_load(&why, why.count) else {
            return .failure(CUDAUnavailable(reason: String(cString: why)))
        }
        return .success(CUDABackend(api: api.pointee))
    }()

    /// Makes `device` the one products use. Returns a line worth telling the user, if any: with
    /// `auto`, that a GPU library was found but cannot be used (a missing library stays silent).
    @discardableResult
    public static func select(_ device: ComputeDevice) throws -> String? {
        switch device {
        case .cpu:
            setActive(nil)
            return nil
        case .cuda:
            setActive(try loaded.get())
            return nil
        case .auto:
            switch loaded {
            case let .success(backend):
                setActive(backend)
                return nil
            case let .failure(error):
                setActive(nil)
                let missing = error.reason.hasPrefix(LQ_CUDA_LIBRARY_NAME + " not found")
                return missing ? nil : "note: running on the CPU (\(error.reason))"
            }
        }
    }

    /// "NVIDIA H200 (compute 9.0, 139.8 GiB, 132 multiprocessors, 60 MiB L2, driver 13000, runtime
    /// 13050) from /path/liblqlora_cuda.so".
    public var summary: String {
        var d = api.device
        let name = withUnsafeBytes(of: &d.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let gib = Double(d.total_memory) / 1_073_741_824
        let path = withUnsafeBytes(of: api.path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return "\(name) (compute \(d.compute_major).\(d.compute_minor), \(String(format: "%.1f", gib)) GiB, "
            + "\(d.multiprocessors) multiprocessors, \(d.l2_bytes >> 20) MiB L2, driver \(d.driver_version), "
            + "runtime \(d.runtime_version)) from \(path)"
    }

    var lastError: String { api.last_error!().map { String(cString: $0) } ?? "unknown CUDA error" }

    /// Copies a matrix to the device; nil (with the reason) when that fails.
    func upload(_ view: UnsafePointer<lq_qtensor>, rows: Int, cols: Int) -> (OpaquePointer?, String?) {
        var handle: OpaquePointer?
        let status = api.matrix_upload!(view, Int64(rows), Int64(cols), &handle)
        return status == 0 ? (handle, nil) : (nil, lastError)
    }

    /// Copies a uniform-integer matrix to the device; nil (with the reason) when that fails.
    func upload(_ view: UnsafePointer<lq_uniform>) -> (OpaquePointer?, String?) {
        var handle: OpaquePointer?
        let status = api.uniform_upload!(view, &handle)
        return status == 0 ? (handle, nil) : (nil, lastError)
    }

    func free(_ matrix: OpaquePointer) { api.matrix_free!(matrix) }

    /// Host-pointer product (lq_cuda_matmul_host); the failure's description, or nil.
    func matmul(_ matrix: OpaquePointer, x: UnsafePointer<Float>, rows n: Int, transposed: Bool, beta: Float,
                y: UnsafeMutablePointer<Float>) -> String? {
        api.matmul_host!(matrix, x, Int64(n), transposed ? 1 : 0, beta, y) == 0 ? nil : lastError
    }
}

/// A quantized matrix's copy on the device, made on its first product while CUDA is active. If the
/// upload fails (too little GPU memory), the matrix says so once and stays on the CPU; a failed
/// product gives up the GPU altogether (CUDABackend.abandon).
final class DeviceCopy: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: OpaquePointer?
    private var backend: CUDABackend?
    private var failed = false

    deinit { if let handle, let backend { backend.free(handle) } }

    /// The device matrix for `backend`, uploading it on first use.
    func matrix(on backend: CUDABackend, name: @autoclosure () -> String,
                upload: () -> (OpaquePointer?, String?)) -> OpaquePointer? {
        lock.lock()
        defer { lock.unlock() }
        if failed { return nil }
        if let handle { return handle }
        let (h, error) = upload()
        guard let h else {
            failed = true
            WarnOnce.say("warning: \(name()): cannot be copied to the GPU (\(error ?? "unknown error")); it stays on the CPU")
            return nil
        }
        handle = h
        self.backend = backend
        return h
    }
}


/// A quantized weight that multiplies on the GPU through its DeviceCopy (QuantizedMatrix,
/// UniformQuantization): what it brings, and the two ways a product reaches the device.
protocol DeviceResident {
    var deviceCopy: DeviceCopy { get }
    /// How warnings about its GPU copy name it (built only when one is printed).
    var deviceName: String { get }
    /// Copies it to `gpu`: the handle, or why not.
    func upload(to gpu: CUDABackend) -> (OpaquePointer?, String?)
}

extension DeviceResident {
    /// Runs `product` on the GPU; false (after one warning) when it cannot, so the caller computes on
    /// the CPU. A failed product leaves its output as it was.
    func onDevice(_ gpu: CUDABackend, _ product: (OpaquePointer) -> String?) -> Bool {
        guard let m = deviceCopy.matrix(on: gpu, name: deviceName, upload: { upload(to: gpu) }) else { return false }
        if let error = product(m) {
            CUDABackend.abandon("GPU product of \(deviceName) failed (\(error))")
            return false
        }
        return true
    }

    /// The device copy (uploaded on first use, shared with the per-product path), or a CUDAFailure.
    func residentMatrix(on gpu: CUDABackend) throws -> OpaquePointer {
        var reason = "it could not be copied earlier"
        let handle = deviceCopy.matrix(on: gpu, name: deviceName, upload: {
            let (h, error) = upload(to: gpu)
            if let error { reason = error }
            return (h, error)
        })
        guard let handle else { throw CUDAFailure(what: "upload of \(deviceName)", reason: reason) }
        return handle
    }
}
