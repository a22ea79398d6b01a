import Foundation
import Testing

/// What every command shares: the option groups (OutputOptions, ThreadOptions) read the same in
/// each command's help, and one error path (CommandFailure) gives one line and exit 1.
struct CommandOptionsTests {
    static func helpLines(_ command: String) throws -> [String] {
        let r = try CLI.run([command, "--help"])
        #expect(r.status == 0, "\(command) --help: \(r.stderr)")
        return r.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// --overwrite is listed right below --out, in each command that writes a model directory.
    @Test(builtBinary, arguments: ["quantize", "dequantize", "convert", "merge"])
    func outputOptionsReadAlike(command: String) throws {
        let lines = try Self.helpLines(command)
        let out = try #require(lines.firstIndex { $0.hasPrefix("--out <out>") }, "\(command): no --out")
        #expect(lines[out] == "--out <out>             The output directory.")
        #expect(lines[out + 1] == "--overwrite             Replace --out if it exists.")
    }

    @Test(builtBinary, arguments: ["quantize", "eval", "generate", "finetune", "fisher"])
    func threadsOptionReadsAlike(command: String) throws {
        #expect(try Self.helpLines(command).contains("--threads <threads>     Threads (default: LQLORA_NUM_THREADS or all cores)."))
    }

    /// A missing input: exit 1, stdout empty, one stderr line naming the command and the path.
    @Test(builtBinary)
    func everyCommandFailsTheSameWay() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let missing = dir.file("missing")
        let text = CLI.text("sample.txt")
        let runs: [(String, [String])] = [
            ("quantize", ["quantize", "--model", missing, "--out", dir.file("q")]),
            ("quantize", ["quantize", "--model", missing, "--out", dir.file("q"), "--method", "lq-lora", "--budget", "3"]),
            ("dequantize", ["dequantize", "--model", missing, "--out", dir.file("d")]),
            ("convert", ["convert", "--from-gguf", missing, "--out", dir.file("c")]),
            ("merge", ["merge", "--model", missing, "--adapter", CLI.adapter, "--out", dir.file("m")]),
            ("eval", ["eval", "--model", missing, "--data", text]),
            ("generate", ["generate", "--model", missing, "--prompt", "hi"]),
            ("fisher", ["fisher", "--model", missing, "--data", text, "--out", dir.file("f.safetensors")]),
            ("tokenize", ["tokenize", "--model", missing, "--text", "hi"]),
            ("inspect", ["inspect", missing]),
        ]
        for (command, arguments) in runs {
            let r = try CLI.run(arguments)
            #expect(r.status == 1 && r.stdout.isEmpty, "\(arguments): \(r.status) \(r.stdout)")
            #expect(r.stderr.hasPrefix("lqlora \(command): error: ") && r.stderr.contains(missing), "\(arguments): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(arguments): \(r.stderr)")
        }
        #expect(dir.contents().isEmpty, "outputs or staging left behind: \(dir.contents())")
    }
}
