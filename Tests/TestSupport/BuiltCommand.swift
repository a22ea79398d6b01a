import Foundation

/// The built `lqlora` executable, run as a user would run it (for the command-line tests).
public enum BuiltCommand {
    /// The executable sits beside the test bundle in the build directory.
    public static let path: String? = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("lqlora").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return nil
    }()

    /// Runs it with `arguments`, adding `environment` to this process's environment.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path!)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // stderr drains on its own thread: a child filling that pipe while we wait on stdout would hang.
        let e = StandardError()
        let done = DispatchSemaphore(value: 0)
        Thread {
            e.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}

/// The child's stderr, filled by its reader thread before the semaphore is signalled.
private final class StandardError: @unchecked Sendable {
    var data = Data()
}
