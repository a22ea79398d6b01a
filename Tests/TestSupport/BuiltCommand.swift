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

    /// A child that ran past its time limit (killed, so that a stuck command fails its test instead of hanging CI).
    public struct TimedOut: Error, CustomStringConvertible {
        public let arguments: [String]
        public let seconds: Double
        public var description: String { "lqlora \(arguments.joined(separator: " ")) ran past \(seconds) s and was killed" }
    }

    /// Runs it with `arguments`, adding `environment` to this process's environment; kills it after `timeout` seconds.
    public static func run(_ arguments: [String], environment: [String: String] = [:],
                           timeout: Double = 600) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(executable: path!, arguments, environment: environment, timeout: timeout)
    }

    /// Runs `executable` (lqlora, or a launcher such as mpirun in front of it) as `run` does.
    public static func run(executable: String, _ arguments: [String], environment: [String: String] = [:],
                           timeout: Double = 600) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let killed = StandardError()  // the watchdog marks its kill here
        let watchdog = DispatchWorkItem {
            if process.isRunning {
                killed.data = Data([1])
                kill(process.processIdentifier, SIGKILL)
            }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
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
        watchdog.cancel()
        if process.terminationReason == .uncaughtSignal && !killed.data.isEmpty {
            throw TimedOut(arguments: arguments, seconds: timeout)
        }
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}

extension BuiltCommand {
    /// Runs it with `arguments` (output discarded) and kills it with SIGKILL after `seconds`, as a
    /// power cut or the OOM killer would; returns whether the kill came before it finished.
    @discardableResult
    public static func runKilled(_ arguments: [String], after seconds: Double) throws -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path!)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: seconds)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal
    }
}

/// Bytes written by one helper thread and read after it has signalled (the child's stderr, the watchdog's mark).
private final class StandardError: @unchecked Sendable {
    var data = Data()
}
