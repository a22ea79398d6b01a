import Foundation
import LQFormats
import LQModel
import LQTensor

/// A bad training record: the file and line at fault.
public enum DatasetError: Error, CustomStringConvertible {
    case unreadable(path: String, detail: String)
    case record(path: String, line: Int, detail: String)
    case empty(path: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(path, detail): return "\(path): \(detail)"
        case let .record(path, line, detail): return "\(path):\(line): \(detail)"
        case let .empty(path, detail): return "\(path): \(detail)"
        }
    }
}

/// One training sequence: tokens and labels aligned as transformers takes them (the label at t is
/// what logits at t − 1 should predict), −100 where the token is not trained (prompts, padding).
public struct Example: Equatable, Sendable {
    public var tokens: [Int]
    public var labels: [Int]

    public init(tokens: [Int], labels: [Int]) {
        self.tokens = tokens
        self.labels = labels
    }

    public var targets: Int { Self.targetCount(labels) }

    /// Positions with a label, the first excepted (nothing predicts it).
    static func targetCount(_ labels: [Int]) -> Int { labels.dropFirst().filter { $0 != ignoreLabel }.count }
}

/// How records become token sequences for one model: its tokenizer, end-of-sequence id and chat layout.
public struct ExampleFormatter {
    public let tokenizer: any Tokenizer
    public let eos: Int
    public let chat: ChatTemplate?
    public let maskPrompt: Bool

    public init(tokenizer: any Tokenizer, eos: Int, chat: ChatTemplate?, maskPrompt: Bool) {
        self.tokenizer = tokenizer
        self.eos = eos
        self.chat = chat
        self.maskPrompt = maskPrompt
    }

    /// The Stanford Alpaca prompt, with or without an input.
    public static func alpacaPrompt(instruction: String, input: String) -> String {
        input.isEmpty
            ? "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n\(instruction)\n\n### Response:\n"
            : "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n\(instruction)\n\n### Input:\n\(input)\n\n### Response:\n"
    }

    /// Text segments of a record, each trained or not (before `maskPrompt` is applied), and whether EOS follows.
    func segments(_ record: [String: Any], format: TrainConfig.DataFormat) throws -> ([(String, Bool)], Bool) {
        func field(_ name: String) throws -> String {
            guard let s = record[name] as? String else { throw FieldError(name: name) }
            return s
        }
        switch format {
        case .text: return ([(try field("text"), true)], true)
        case .completion: return ([(try field("prompt"), false), (try field("completion"), true)], true)
        case .alpaca:
            let input = record["input"] as? String ?? ""
            return ([(Self.alpacaPrompt(instruction: try field("instruction"), input: input), false), (try field("output"), true)], true)
        case .chat:
            guard let chat else { throw FieldError(name: "messages", detail: "needs a chat template in the model's tokenizer_config.json") }
            guard let list = record["messages"] as? [[String: Any]], !list.isEmpty else { throw FieldError(name: "messages") }
            let messages = try list.map { m -> ChatTemplate.Message in
                guard let role = m["role"] as? String, let content = m["content"] as? String else {
                    throw FieldError(name: "messages", detail: "needs \"role\" and \"content\" strings in every message")
                }
                return ChatTemplate.Message(role: role, content: content)
            }
            guard messages.contains(where: { $0.role == "assistant" }) else { throw FieldError(name: "messages", detail: "has no assistant turn to train on") }
            // Each assistant turn is trained; what the template puts before it (other turns, headers) is prompt.
            var out: [(String, Bool)] = [], done = ""
            for (k, m) in messages.enumerated() where m.role == "assistant" {
                let prompt: String, full: String
                do {
                    prompt = try chat.render(Array(messages[..<k]), addGenerationPrompt: true)
                    full = try chat.render(Array(messages[...k]), addGenerationPrompt: false)
                } catch { throw FieldError(name: "messages", detail: "\(error)") }
                guard prompt.hasPrefix(done), full.hasPrefix(prompt) else {
                    throw FieldError(name: "messages", detail: "renders in a way whose turns cannot be separated")
                }
                out.append((String(prompt.dropFirst(done.count)), false))
                out.append((String(full.dropFirst(prompt.count)), true))
                done = full
            }
            return (out, false)
        case .auto: preconditionFailure("format resolved before formatting")
        }
    }

    struct FieldError: Error {
        let name: String
        var detail: String?
    }

    /// Tokens and labels of one record (untruncated).
    func example(_ record: [String: Any], format: TrainConfig.DataFormat) throws -> Example {
        let (parts, addEOS) = try segments(record, format: format)
        var tokens: [Int] = [], labels: [Int] = []
        for (i, (text, trained)) in parts.enumerated() where !text.isEmpty {
            let ids = try tokenizer.encode(text, addSpecialTokens: i == 0 || tokens.isEmpty)
            tokens += ids
            labels += (trained || !maskPrompt) ? ids : [Int](repeating: ignoreLabel, count: ids.count)
        }
        if addEOS {
            tokens.append(eos)
            labels.append(eos)
        }
        return Example(tokens: tokens, labels: labels)
    }
}

/// Examples read from a file, with what was skipped or cut.
public struct Dataset {
    public let path: String
    public let format: TrainConfig.DataFormat
    public var examples: [Example]
    public var skipped = 0
    public var truncated = 0
    /// Examples left without a target once cut to seq_len (their answer starts too late).
    public var dropped = 0

    public var tokenCount: Int { examples.reduce(0) { $0 + $1.tokens.count } }
    public var targetCount: Int { examples.reduce(0) { $0 + $1.targets } }

    /// Reads .jsonl / .jsonl.gz (one JSON object per line) or .txt (one long text, cut into seqLen windows).
    public init(path: String, format requested: TrainConfig.DataFormat, formatter: ExampleFormatter, seqLen: Int, skipInvalid: Bool) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else { throw DatasetError.unreadable(path: path, detail: "no such file") }
        let base = path.hasSuffix(".gz") ? String(path.dropLast(3)) : path
        if !base.hasSuffix(".jsonl") && !base.hasSuffix(".json") {
            guard requested == .auto || requested == .text else {
                throw DatasetError.unreadable(path: path, detail: "a plain-text file holds format 'text', not '\(requested.rawValue)'")
            }
            format = .text
            let text = try EvaluationText.read(path: path)
            var ids = try formatter.tokenizer.encode(text, addSpecialTokens: true)
            ids.append(formatter.eos)
            examples = stride(from: 0, to: ids.count, by: seqLen).map { Example(tokens: Array(ids[$0..<min(ids.count, $0 + seqLen)]), labels: Array(ids[$0..<min(ids.count, $0 + seqLen)])) }
            examples.removeAll { $0.tokens.count < 2 }
        } else {
            let data: Data
            do { data = try Gzip.readMaybeCompressed(path: path) } catch { throw DatasetError.unreadable(path: path, detail: "\(error)") }
            var resolved = requested
            var out: [Example] = []
            var skipped = 0, truncated = 0, dropped = 0
            for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if line.allSatisfy(\.isWhitespace) { continue }
                guard let record = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                    if skipInvalid { skipped += 1; continue }
                    throw DatasetError.record(path: path, line: n + 1, detail: "is not a JSON object")
                }
                if resolved == .auto {
                    guard let f = Self.detect(record) else {
                        throw DatasetError.record(path: path, line: n + 1, detail: "has fields \(record.keys.sorted()): expected text, prompt+completion, messages or instruction+output (or set data.format)")
                    }
                    resolved = f
                }
                do {
                    var e = try formatter.example(record, format: resolved)
                    if e.tokens.count > seqLen {
                        e.tokens.removeLast(e.tokens.count - seqLen)
                        e.labels.removeLast(e.labels.count - seqLen)
                        truncated += 1
                    }
                    if e.targets == 0 { dropped += 1; continue }  // nothing left to learn from after truncation
                    out.append(e)
                } catch let error as ExampleFormatter.FieldError {
                    if skipInvalid { skipped += 1; continue }
                    throw DatasetError.record(path: path, line: n + 1, detail: "field \"\(error.name)\" " + (error.detail ?? "is missing or not a string") + " (format \(resolved.rawValue))")
                }
            }
            format = resolved
            examples = out
            self.skipped = skipped
            self.truncated = truncated
            self.dropped = dropped
        }
        guard !examples.isEmpty else { throw DatasetError.empty(path: path, detail: "holds no usable examples") }
    }

    static func detect(_ record: [String: Any]) -> TrainConfig.DataFormat? {
        if record["messages"] != nil { return .chat }
        if record["prompt"] != nil && record["completion"] != nil { return .completion }
        if record["instruction"] != nil && record["output"] != nil { return .alpaca }
        if record["text"] != nil { return .text }
        return nil
    }
}

/// A micro-batch: equal-length rows (right-padded, padding unlabelled).
public struct Batch: Equatable, Sendable {
    public var tokens: [[Int]]
    public var labels: [[Int]]
    /// Each sequence's real tokens; the rest of its row is padding.
    public var lengths: [Int]
    public var targets: Int { labels.reduce(0) { $0 + Example.targetCount($1) } }
    public var tokenCount: Int { tokens.reduce(0) { $0 + $1.count } }
}

/// The order of micro-batches in each epoch, a pure function of (seed, epoch) so that a resumed
/// run sees exactly the batches the interrupted one would have.
public struct BatchPlan {
    public let examples: [Example]
    public let batchSize: Int
    public let seqLen: Int
    public let packing: Bool
    public let pad: Int
    public let seed: Int

    public init(examples: [Example], batchSize: Int, seqLen: Int, packing: Bool, pad: Int, seed: Int) {
        self.examples = examples
        self.batchSize = batchSize
        self.seqLen = seqLen
        self.packing = packing
        self.pad = pad
        self.seed = seed
    }

    public func batches(epoch: Int, shuffle: Bool = true) -> [Batch] {
        var rng = SeededGenerator(seed: UInt64(seed) &* 0x9E37_79B9 &+ UInt64(epoch) &+ 1)
        var order = Array(examples.indices)
        if shuffle { order.shuffle(using: &rng) }
        var rows: [Example] = []
        if packing {
            // One stream of every example, cut into seq_len windows.
            var tokens: [Int] = [], labels: [Int] = []
            for i in order {
                tokens += examples[i].tokens
                labels += examples[i].labels
            }
            for start in stride(from: 0, to: tokens.count, by: seqLen) where tokens.count - start >= 2 {
                let end = min(tokens.count, start + seqLen)
                rows.append(Example(tokens: Array(tokens[start..<end]), labels: Array(labels[start..<end])))
            }
        } else {
            // Length-grouped: sort within chunks of 32 batches so each batch pads little, then shuffle the batches.
            let chunk = 32 * batchSize
            for start in stride(from: 0, to: order.count, by: chunk) {
                let part = order[start..<min(order.count, start + chunk)].sorted { examples[$0].tokens.count > examples[$1].tokens.count }
                rows += part.map { examples[$0] }
            }
        }
        var batches: [Batch] = []
        for start in stride(from: 0, to: rows.count, by: batchSize) {
            let group = rows[start..<min(rows.count, start + batchSize)]
            let width = group.map(\.tokens.count).max()!
            batches.append(Batch(tokens: group.map { $0.tokens + [Int](repeating: pad, count: width - $0.tokens.count) },
                                 labels: group.map { $0.labels + [Int](repeating: ignoreLabel, count: width - $0.labels.count) },
                                 lengths: group.map(\.tokens.count)))
        }
        if shuffle && !packing { batches.shuffle(using: &rng) }
        return batches
    }
}

extension ChatTemplate {
    /// The chat layout of a model directory's tokenizer_config.json, if it has a known one.
    public static func of(directory: String) -> ChatTemplate? {
        guard let data = FileManager.default.contents(atPath: directory + "/tokenizer_config.json"),
              let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return try? ChatTemplate(template: json["chat_template"] as? String)
    }
}
