import ArgumentParser
import Foundation
import LQQuant

extension ComputeDevice: ExpressibleByArgument {}

/// `--device cpu|cuda|auto` for the commands that compute.
struct DeviceOptions: ParsableArguments {
    @Option(help: "Where quantized matrix products run: cpu, cuda (needs liblqlora_cuda.so from scripts/build-cuda.sh and a GPU), or auto.")
    var device: ComputeDevice = .auto

    /// Selects the device for this process, telling the user once when auto falls back to the CPU.
    func activate() throws {
        if let note = try CUDABackend.select(device) { FileHandle.standardError.write(Data((note + "\n").utf8)) }
    }
}
