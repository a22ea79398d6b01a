import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQTensor

/// `lqlora embed`: sentence embeddings from a BERT-family sentence-transformers checkpoint.
struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sentence embeddings as sentence-transformers computes them (BERT encoders such as all-MiniLM-L6-v2).",
        discussion: """
            The model directory's modules.json, 1_Pooling/config.json and sentence_bert_config.json say how \
            to pool, whether to normalise and where to truncate; a plain BertModel directory gets mean pooling, \
            as sentence-transformers gives it. --json writes JSON lines, one {"text": ..., "embedding": [...]} \
            object per text in input order (floats in their shortest form that reads back to the same fp32); \
            otherwise one line per text shows its token count, norm and first values. The output is the same \
            on any number of threads.
            """)

    @Option(help: "The model directory (sentence-transformers layout, dense or quantized weights).")
    var model: String

    @Option(help: "A text to embed (repeat for several).")
    var text: [String] = []

    @Option(help: "A file of texts: .jsonl with a \"text\" field per line, or any other file with one text per non-blank line; optionally .gz.")
    var file: String?

    @Flag(help: "Write JSON lines: {\"text\": ..., \"embedding\": [...]} per text.")
    var json = false

    @Option(parsing: .unconditional, help: "Texts per encoder pass.")
    var batchSize = 32

    @OptionGroup var threadOptions: ThreadOptions

    /// Values shown per text without --json.
    static let shownValues = 6

    func validate() throws {
        guard text.isEmpty != (file == nil) else { throw ValidationError("give --text (once or more) or --file, not both") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
    }

    func run() throws {
        threadOptions.configure()
        try CommandFailure.exits("embed") {
            let embedder = try SentenceEmbedder(directory: model)
            let texts = try file.map { try EvaluationText.texts(path: $0) } ?? text
            let d = embedder.dimension
            if !json {
                let s = embedder.settings
                print("\(texts.count) embedding\(texts.count == 1 ? "" : "s") of \(d) dimensions (\(s.pooling.map(\.rawValue).joined(separator: "+")) pooling"
                    + (s.normalize ? ", L2-normalised" : "") + ", at most \(embedder.maxLength) tokens)")
            }
            // A batch at a time, written as it is done: memory stays that of one batch.
            let start = Date()
            var tokens = 0, truncated = 0
            for first in stride(from: 0, to: texts.count, by: batchSize) {
                let batch = texts[first..<min(texts.count, first + batchSize)]
                let tokenized = batch.map(embedder.tokenize)
                let embeddings = embedder.embed(tokens: tokenized.map(\.ids), batchSize: batchSize)
                var out = ""
                for (i, text) in batch.enumerated() {
                    let v = UnsafeBufferPointer(start: embeddings.pointer + i * d, count: d)
                    if json {
                        out += "{\"text\":" + JSONText.serialize(text) + ",\"embedding\":[" + v.map { "\($0)" }.joined(separator: ",") + "]}\n"
                    } else {
                        let norm = v.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
                        let values = v.prefix(Self.shownValues).map { String(format: "%+.4f", $0) }.joined(separator: " ")
                        out += String(format: "%4d  %3d tokens  norm %.4f  [%@ …]  ", first + i + 1, tokenized[i].ids.count, norm, values)
                            + JSONText.serialize(Self.preview(text)) + "\n"
                    }
                }
                print(out, terminator: "")
                tokens += tokenized.reduce(0) { $0 + $1.ids.count }
                truncated += tokenized.filter(\.truncated).count
            }
            fflush(stdout)  // before the summary on stderr
            let seconds = Date().timeIntervalSince(start)
            printError(String(format: "embedded %d text%@ (%d tokens%@) in %.2f s: %.1f texts/s, %.0f tokens/s", texts.count, texts.count == 1 ? "" : "s", tokens,
                              truncated > 0 ? ", \(truncated) truncated to \(embedder.maxLength)" : "", seconds,
                              Double(texts.count) / max(seconds, 1e-9), Double(tokens) / max(seconds, 1e-9)))
        }
    }

    /// The start of a text, for the summary line.
    static func preview(_ text: String) -> String {
        text.count <= 40 ? text : String(text.prefix(39)) + "…"
    }
}
