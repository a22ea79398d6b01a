// lqlora-fuzz TARGET --corpus DIR --scratch DIR [--runs N] [--seed S] [--hang-seconds T] [--memory-mb M]
//
// One batch of the deterministic mutation fuzzer (LQFuzz) over one target, as scripts/fuzz.sh
// runs it: the input being executed is always in SCRATCH (a crash leaves it there), SCRATCH/progress
// holds the executions done (every 1000), and the last line printed is the batch's counts.
// Exit status: 0 done, 70 an execution hung (its input in SCRATCH/hang-input), 64 bad usage; a
// crash ends the process by its signal.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LQFuzz

func usage(_ message: String) -> Never {
    FileHandle.standardError.write(Data("lqlora-fuzz: \(message)\nusage: lqlora-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) --corpus DIR --scratch DIR [--runs N] [--seed S] [--hang-seconds T] [--memory-mb M]\n".utf8))
    exit(64)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard let first = arguments.first, let target = FuzzTarget(rawValue: first) else { usage("the first argument must name a target") }
arguments.removeFirst()
var options: [String: String] = [:]
while !arguments.isEmpty {
    let key = arguments.removeFirst()
    guard key.hasPrefix("--"), !arguments.isEmpty else { usage("'\(key)' needs a value") }
    options[String(key.dropFirst(2))] = arguments.removeFirst()
}
guard let corpusDirectory = options["corpus"], let scratch = options["scratch"] else { usage("--corpus and --scratch are required") }
let runs = Int(options["runs"] ?? "10000") ?? 10000
let seed = UInt64(options["seed"] ?? "1") ?? 1
let hang = Double(options["hang-seconds"] ?? "10") ?? 10
// A hostile input that allocates without bound then fails its allocation (a crash, kept) instead
// of taking the machine's memory.
var limit = rlimit(rlim_cur: rlim_t((Int(options["memory-mb"] ?? "4096") ?? 4096) << 20), rlim_max: rlim_t.max)
setrlimit(Int32(RLIMIT_AS.rawValue), &limit)

let corpus: [[UInt8]]
do { corpus = try Fuzzer.corpus(directory: corpusDirectory).map(\.bytes) } catch { usage("\(corpusDirectory): \(error)") }
guard !corpus.isEmpty else { usage("\(corpusDirectory) holds no seeds") }
try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
let fuzzer = Fuzzer(target: target, corpus: corpus, scratch: scratch, hangSeconds: hang)
let start = Date()
let report = fuzzer.run(runs: runs, seed: seed) { done in
    try? Data("\(done)\n".utf8).write(to: URL(fileURLWithPath: scratch + "/progress"))
}
try? Data("\(report.executions)\n".utf8).write(to: URL(fileURLWithPath: scratch + "/progress"))
print(String(format: "%@: %d executions (%d accepted, %d refused, %d kinds of refusal), slowest %.3f s, seed %llu, %.1f s",
             target.rawValue, report.executions, report.accepted, report.refused, report.refusalKinds.count, report.slowest, seed,
             Date().timeIntervalSince(start)))
