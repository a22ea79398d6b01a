import Foundation
import LQTestSupport
import Testing

/// `--device` and `lqlora env` on a machine whatever its GPU: without liblqlora_cuda.so, `cuda`
/// fails naming the library, `auto` says why once and computes exactly what `cpu` computes.
struct DeviceCommandTests {
    static let binary = BuiltCommand.path

    /// The perplexity from `eval --json`.
    static func perplexity(_ stdout: String) throws -> Double {
        let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any]
        return try #require(object?["perplexity"] as? Double)
    }

    @Test(.enabled(if: binary != nil, "lqlora binary not built beside the tests"))
    func missingGPULibraryIsAnErrorForCudaAndTheCPUForAuto() throws {
        let ws = try Workspace()
        let q = try BuiltCommand.run(["quantize", "--model", ws.root + "/model", "--out", ws.root + "/nf4", "--method", "nf4"])
        #expect(q.status == 0, "\(q.stderr)")
        let text = ws.root + "/text.txt"
        try String(repeating: "The sky is blue. Bees make honey. A dog barks at the apple tree.\n", count: 6)
            .write(toFile: text, atomically: true, encoding: .utf8)
        let eval = ["eval", "--model", ws.root + "/nf4", "--data", text, "--ctx", "32", "--json", "--threads", "2"]
        let bogus = ["LQLORA_CUDA_LIBRARY": ws.root + "/nowhere/liblqlora_cuda.so"]

        let cpu = try BuiltCommand.run(eval + ["--device", "cpu"], environment: bogus)
        #expect(cpu.status == 0 && !cpu.stderr.contains("note:"), "\(cpu.stderr)")
        let reference = try Self.perplexity(cpu.stdout)
        #expect(reference > 1 && reference.isFinite)

        let cuda = try BuiltCommand.run(eval + ["--device", "cuda"], environment: bogus)
        #expect(cuda.status == 1)
        #expect(cuda.stderr.contains("--device cuda: LQLORA_CUDA_LIBRARY=\(ws.root)/nowhere/liblqlora_cuda.so cannot be loaded"), "\(cuda.stderr)")

        let auto = try BuiltCommand.run(eval + ["--device", "auto"], environment: bogus)
        #expect(auto.status == 0, "\(auto.stderr)")
        #expect(auto.stderr.components(separatedBy: "note: running on the CPU").count == 2, "\(auto.stderr)")
        #expect(try Self.perplexity(auto.stdout) == reference)

        let wrong = try BuiltCommand.run(eval + ["--device", "tpu"])
        #expect(wrong.status == 64 && wrong.stderr.contains("cpu"), "\(wrong.stderr)")

        let env = try BuiltCommand.run(["env"], environment: ["LQLORA_CUDA_LIBRARY": "/lib/no-such-library.so"])
        #expect(env.status == 0 && env.stdout.contains("cuda:          not available: LQLORA_CUDA_LIBRARY=/lib/no-such-library.so cannot be loaded"),
                "\(env.stdout)")
        #expect(env.stdout.contains("cpu features:"))
    }
}
