import Foundation

/// `mpirun` in front of the built lqlora, for the data-parallel tests.
///
/// Where OpenMPI is not installed these tests are skipped with the reason, except under
/// `LQLORA_REQUIRE_MPI=1` or `LQLORA_REQUIRE_MODELS=1` (CI), where they run and fail.
public enum MPIRun {
    public static let path: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map(String.init) + ["/usr/bin"]
        return dirs.map { $0 + "/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()
    public static let required = ProcessInfo.processInfo.environment["LQLORA_REQUIRE_MPI"] == "1" || RealModel.required
    /// Whether the MPI tests run: mpirun and lqlora are there, or MPI is required.
    public static let enabled = BuiltCommand.path != nil && (path != nil || required)

    public struct Missing: Error, CustomStringConvertible {
        public var description: String { "mpirun not found (LQLORA_REQUIRE_MPI=1 or LQLORA_REQUIRE_MODELS=1): install openmpi-bin (scripts/install-deps.sh --cross)" }
    }

    /// `mpirun -np ranks lqlora arguments…`, as root too, more ranks than cores allowed.
    public static func run(ranks: Int, _ arguments: [String], environment: [String: String] = [:],
                           timeout: Double = 300) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let path else { throw Missing() }
        return try BuiltCommand.run(executable: path, ["--allow-run-as-root", "--oversubscribe", "-np", String(ranks), BuiltCommand.path!] + arguments,
                                    environment: environment, timeout: timeout)
    }
}
