import ArgumentParser
import Foundation
import LQDistributed
import LQTensor

/// The `lqlora` command tree.
public struct LQLoRA: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "lqlora",
        abstract: "Compress and finetune Hugging Face language models: NormalFloat, LQ-LoRA, LoRA.",
        version: version,
        subcommands: [Quantize.self, Allocate.self, Dequantize.self, Convert.self, Export.self, Eval.self, Generate.self, Merge.self, Finetune.self, Fisher.self, Tokenize.self, Embed.self, RAG.self, Inspect.self, Bench.self, Env.self])

    public init() {}

    /// ParsableCommand's main, joining the MPI job first when mpirun started this process. Under
    /// several ranks a failure on any rank ends them all (MPI_Abort) after its message, so that no
    /// rank waits forever on one that stopped; a run every rank stops together (Ctrl-C, 130) ends normally.
    public static func main() {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
            try Cluster.start()
            try refuseUnlessDistributed(command)
            try command.run()
        } catch {
            guard Cluster.world.size > 1 else {
                Cluster.finish()
                exit(withError: error)
            }
            let code = exitCode(for: error)
            if code.rawValue == 130 {
                Cluster.finish()
                Foundation.exit(130)
            }
            let message = fullMessage(for: error)
            if !message.isEmpty { printError(message) }
            Cluster.abort(code: code.rawValue == 0 ? 1 : code.rawValue)
        }
        Cluster.finish()
    }

    /// Under several ranks only the commands that split their work run; another would run N times.
    static func refuseUnlessDistributed(_ command: ParsableCommand) throws {
        guard Cluster.world.size > 1 else { return }
        switch command {
        case is Finetune: return
        case let q as Quantize where q.allocates: return
        default:
            let name = type(of: command).configuration.commandName ?? "\(type(of: command))".lowercased()
            throw CLIError("lqlora \(name)\(command is Quantize ? " --method \((command as! Quantize).resolvedMethod.rawValue)" : "") runs as one process; "
                           + "under mpirun with \(Cluster.world.size) ranks only finetune and quantize --method lq-lora / qlora-ilp split their work (run it without mpirun)")
        }
    }
}
