import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQRAG

/// `lqlora rag eval`: the index against exact search, and the judges against known sources.
struct RAGEval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure retrieval on a question set: recall@k of the HNSW index against exact search, query latency, and each judge's hit rate.",
        discussion: """
            --questions is .jsonl with a "question" per line and optionally a "source": text of the passage \
            that answers it (a hit is a kept passage containing it, whitespace aside), or any other file with \
            one question per non-blank line. Every judge ranks the same candidates. Latencies are medians over \
            the questions, each timed --repeats times (its fastest kept).
            """)

    @Option(help: "The database file.")
    var db: String

    @OptionGroup var embedderOptions: EmbedderOptions

    @Option(help: "The question set.")
    var questions: String

    @Option(parsing: .unconditional, help: "Neighbours compared for recall@k.")
    var k = 10

    @Option(parsing: .unconditional, help: "Times each search is timed.")
    var repeats = 3

    @OptionGroup var retrieval: RetrievalOptions

    @Flag(help: "Print the figures as one JSON object.")
    var json = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard k >= 1, repeats >= 1 else { throw ValidationError("--k and --repeats must be at least 1") }
    }

    /// A question and the text its answer's passage holds, if known.
    struct Question {
        let text: String
        let source: String?
    }

    static func read(_ path: String) throws -> [Question] {
        let text = try EvaluationText.decoded(Data(contentsOf: URL(fileURLWithPath: path)), path: path, strict: true)
        guard path.hasSuffix(".jsonl") else {
            return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.map { Question(text: $0, source: nil) }
        }
        var out: [Question] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let q = record["question"] as? String else {
                throw ModelError.badRecord(path: path, line: n + 1, detail: "field \"question\" is missing: expected a JSON object with a \"question\" string")
            }
            out.append(Question(text: q, source: record["source"] as? String))
        }
        return out
    }

    /// Exact results beyond k that may tie with the k-th.
    static let tieRoom = 20

    /// The share of `found` that exact search ranks in its top k, a passage tied with the k-th
    /// (within 1e-6) counting as in: a corpus may hold one text twice (WikiText repeats headings).
    static func recall(_ found: [Int], exact: [(id: Int, score: Float)], k: Int) -> Double {
        let n = min(k, exact.count)
        guard n > 0 else { return 1 }
        let kth = exact[n - 1].score
        let good = Set(exact.prefix(n).map(\.id)).union(exact.dropFirst(n).filter { $0.score >= kth - 1e-6 }.map(\.id))
        return Double(found.filter(good.contains).count) / Double(n)
    }

    /// Text with runs of whitespace as one space, for containment.
    static func squeezed(_ s: String) -> String { s.split(whereSeparator: \.isWhitespace).joined(separator: " ") }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The fastest of `repeats` runs of `body`, in milliseconds, and its value.
    func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
        var best = Double.infinity, value: T?
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            value = try body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6)
        }
        return (value!, best)
    }

    func run() throws {
        threadOptions.configure()
        try CommandFailure.exits("rag eval") {
            let set = try Self.read(questions)
            guard !set.isEmpty else { throw CLIError("\(questions) holds no questions") }
            let database = try RAGDatabase.open(db)
            let (embedder, identity) = try embedderOptions.load()
            let retriever = try Retriever(database: database, embedder: embedder, identity: identity)
            let options = retrieval.options
            let passages = try database.passageCount
            let t0 = DispatchTime.now().uptimeNanoseconds
            try retriever.load(exact: false)  // once: a second load is a no-op
            let loadANN = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-6
            try retriever.load(exact: true)
            var recall = 0.0, annTimes: [Double] = [], exactTimes: [Double] = [], embedTimes: [Double] = []
            var hits = [Judge: Int](), candidateHits = 0, sourced = 0
            for q in set {
                let (query, embedTime) = timed { retriever.embed(q.text) }
                let (ann, annTime) = try timed { try retriever.nearest(query, k: max(k, options.candidates), exact: false, ef: options.ef) }
                let (exact, exactTime) = try timed { try retriever.nearest(query, k: max(k, options.candidates) + Self.tieRoom, exact: true, ef: options.ef) }
                embedTimes.append(embedTime)
                annTimes.append(annTime)
                exactTimes.append(exactTime)
                recall += Self.recall(ann.prefix(k).map(\.id), exact: exact, k: k)
                guard let source = q.source.map(Self.squeezed) else { continue }
                sourced += 1
                let ids = (options.exact ? exact : ann).prefix(options.candidates).map(\.id)
                var judged = options
                for judge in Judge.allCases {
                    judged.judge = judge
                    let kept = try retriever.judge(query: query, ids: ids, options: judged).prefix(options.topN)
                    if kept.contains(where: { Self.squeezed($0.passage.text).contains(source) }) { hits[judge, default: 0] += 1 }
                }
                if try database.passages(ids).contains(where: { Self.squeezed($0.text).contains(source) }) { candidateHits += 1 }
            }
            let n = Double(set.count)
            let figures: [String: Any] = [
                "questions": set.count, "with_source": sourced, "passages": passages, "k": k, "ef": options.ef,
                "recall_at_k": recall / n, "ann_ms": Self.median(annTimes), "exact_ms": Self.median(exactTimes),
                "embed_ms": Self.median(embedTimes), "ann_load_ms": loadANN, "top_n": options.topN, "candidates": options.candidates,
                "hit_rate": Dictionary(uniqueKeysWithValues: Judge.allCases.map { ($0.rawValue, sourced > 0 ? Double(hits[$0, default: 0]) / Double(sourced) : Double.nan) }),
                "candidate_hit_rate": sourced > 0 ? Double(candidateHits) / Double(sourced) : Double.nan,
            ]
            if json {
                print(JSONText.serialize(figures, indent: 0).replacingOccurrences(of: "\n", with: ""))
                return
            }
            print("\(set.count) questions (\(sourced) with a known source) over \(Format.grouped(passages)) passages; HNSW ef \(options.ef)")
            print(String(format: "recall@%d of HNSW against exact search: %.4f", k, recall / n))
            print(String(format: "query latency (median; fastest of %d each): HNSW %.3f ms, exact %.3f ms, embedding the question %.2f ms; loading the index %.1f ms",
                         repeats, Self.median(annTimes), Self.median(exactTimes), Self.median(embedTimes), loadANN))
            if sourced > 0 {
                let rates = Judge.allCases.map { String(format: "%@ %.3f (%d)", $0.rawValue, Double(hits[$0, default: 0]) / Double(sourced), hits[$0, default: 0]) }
                print("hit rate of the top \(options.topN) of \(options.candidates) \(options.exact ? "exact" : "HNSW") candidates: " + rates.joined(separator: ", ")
                    + String(format: "; source among the candidates %.3f (%d)", Double(candidateHits) / Double(sourced), candidateHits))
            }
        }
    }
}
