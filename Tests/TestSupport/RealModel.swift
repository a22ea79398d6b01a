import Foundation

/// The real checkpoints the fetch scripts put under models/, for the tests that need them.
///
/// Where a model is missing its tests are skipped with the reason, except under
/// `LQLORA_REQUIRE_MODELS=1` (CI), where they run and fail: they are the strongest tests we have,
/// and a fetch that broke must not turn them silently into skips.
public enum RealModel {
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    public static let smolLM2 = root + "/models/SmolLM2-135M-Instruct"
    public static let miniLM = root + "/models/all-MiniLM-L6-v2"
    public static let required = ProcessInfo.processInfo.environment["LQLORA_REQUIRE_MODELS"] == "1"

    /// Whether a test of the model in `directory` runs: it is there, or it is required.
    public static func enabled(_ directory: String) -> Bool {
        required || FileManager.default.fileExists(atPath: directory + "/model.safetensors")
    }
}
