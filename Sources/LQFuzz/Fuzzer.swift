#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LQTensor

/// What a run of the fuzzer saw.
public struct FuzzReport: Sendable {
    public var executions = 0, accepted = 0, refused = 0
    /// The slowest execution (seconds) and its input.
    public var slowest = 0.0, slowestInput: [UInt8] = []
    /// Distinct refusals, by the error's text with digits dropped (for a summary of what was reached).
    public var refusalKinds: Set<String> = []
}

/// A deterministic mutation fuzzer over one target: execution i runs a seed (the first pass) or
/// a mutation of one drawn by a seeded generator, so a run is reproduced by its seed and count.
///
/// Each input is written to `scratch/<target file name>` before it runs, so a crash leaves the
/// input that caused it there (scripts/fuzz.sh keeps it). A watchdog thread ends the process
/// with status 70 when one execution takes longer than `hangSeconds`, after copying its input to
/// `scratch/hang-input`: an endless loop is a finding, never a stuck run.
public final class Fuzzer: @unchecked Sendable {
    public let target: FuzzTarget
    public let corpus: [[UInt8]]
    public let scratch: String
    public let hangSeconds: Double
    let mutator: Mutator
    private let lock = NSLock()
    private var startedAt: UInt64 = 0  // 0: no execution in progress
    private var watching = false

    public static let hangStatus: Int32 = 70

    public init(target: FuzzTarget, corpus: [[UInt8]], scratch: String, hangSeconds: Double = 10) {
        precondition(!corpus.isEmpty, "a fuzz corpus needs at least one seed")
        self.target = target
        self.corpus = corpus
        self.scratch = scratch
        self.hangSeconds = hangSeconds
        mutator = Mutator(format: target.format, maxSize: max(4096, 4 * (corpus.map(\.count).max() ?? 0)))
    }

    /// The corpus files of a directory (sorted by name; hidden files skipped).
    public static func corpus(directory: String) throws -> [(name: String, bytes: [UInt8])] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { !$0.hasPrefix(".") }.sorted().map {
            ($0, Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + $0))))
        }
    }

    public var inputPath: String { scratch + "/" + target.fileName }

    /// Writes `input` where the target reads it, then runs the target on it.
    public func execute(_ input: [UInt8]) -> FuzzTarget.Outcome {
        let fd = open(inputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "\(inputPath): cannot write the fuzz input: \(String(cString: strerror(errno)))")
        input.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = write(fd, raw.baseAddress! + done, raw.count - done)
                precondition(n > 0, "\(inputPath): cannot write the fuzz input")
                done += n
            }
        }
        close(fd)
        return target.run(path: inputPath, directory: scratch)
    }

    public func run(runs: Int, seed: UInt64, progress: ((Int) -> Void)? = nil) -> FuzzReport {
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        startWatchdog()
        var rng = SeededGenerator(seed: seed)
        var report = FuzzReport()
        // Mutants the target accepted join the pool (at most 64), so mutations stack past the first check.
        var pool: [[UInt8]] = []
        for i in 0..<runs {
            let input: [UInt8]
            if i < corpus.count {
                input = corpus[i]
            } else {
                let base = !pool.isEmpty && rng.next() % 4 == 0 ? pool[Int(rng.next() % UInt64(pool.count))] : corpus[Int(rng.next() % UInt64(corpus.count))]
                input = mutator.mutate(base, corpus: corpus, rng: &rng)
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            setStarted(t0)
            let outcome = execute(input)
            let t1 = DispatchTime.now().uptimeNanoseconds
            setStarted(0)
            let seconds = Double(t1 - t0) / 1e9
            if seconds > report.slowest { report.slowest = seconds; report.slowestInput = input }
            report.executions += 1
            switch outcome {
            case .accepted:
                report.accepted += 1
                if i >= corpus.count {
                    if pool.count < 64 { pool.append(input) } else { pool[Int(rng.next() % 64)] = input }
                }
            case let .refused(message):
                report.refused += 1
                if report.refusalKinds.count < 500 { report.refusalKinds.insert(String(message.split(separator: ":").dropFirst().joined(separator: ":").filter { !$0.isNumber }.prefix(90))) }
            }
            if let progress, (i + 1) % 1000 == 0 { progress(i + 1) }
        }
        return report
    }

    private func setStarted(_ t: UInt64) {
        lock.lock()
        startedAt = t
        lock.unlock()
    }

    private func startWatchdog() {
        lock.lock()
        defer { lock.unlock() }
        guard !watching else { return }
        watching = true
        let limit = UInt64(hangSeconds * 1e9)
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                lock.lock()
                let started = startedAt
                lock.unlock()
                guard started > 0, DispatchTime.now().uptimeNanoseconds - started > limit else { continue }
                let hang = scratch + "/hang-input"
                try? FileManager.default.removeItem(atPath: hang)
                try? FileManager.default.copyItem(atPath: inputPath, toPath: hang)
                FileHandle.standardError.write(Data("lqlora-fuzz \(target.rawValue): an execution ran past \(hangSeconds) s; its input is \(hang)\n".utf8))
                _exit(Self.hangStatus)
            }
        }
        thread.start()
    }
}
