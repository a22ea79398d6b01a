import Foundation
import LQFormats
import LQModel

/// A user's verdict on an answer.
public enum Verdict: String, Sendable {
    case accept, reject
}

/// Answers as they were given (the chat the model saw, the passages it was shown) and the feedback
/// on them, in the database beside the passages; the accepted and corrected ones become training
/// data for `lqlora finetune`.
extension RAGDatabase {
    /// Records an answer with its sources; returns its id.
    public func storeAnswer(question: String, messages: [ChatTemplate.Message], answer: String, model: String, adapter: String?,
                            judge: Judge, sources: [Candidate]) throws -> Int {
        try db.transaction {
            try db.run("INSERT INTO answers (asked_at, question, messages, answer, model, adapter, judge) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.text(Self.timestamp()), .text(question), .text(Self.json(messages)), .text(answer), .text(model), .optional(adapter),
                        .text(judge.rawValue)])
            let id = Int(db.lastInsertedRow)
            for (rank, c) in sources.enumerated() {
                try db.run("INSERT INTO answer_sources (answer, rank, passage, source, text, cosine, qim) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [.int(id), .int(rank + 1), .int(c.passage.id), .text(c.passage.source), .text(c.passage.text), .double(c.cosine), .double(c.qim)])
            }
            return id
        }
    }

    /// Feedback on answer `id` (the newest answer when nil); returns the answer's id.
    @discardableResult
    public func giveFeedback(answer id: Int?, verdict: Verdict, correction: String?) throws -> Int {
        try db.transaction {
            let answer: Int
            if let id {
                guard try db.query("SELECT id FROM answers WHERE id = ?", [.int(id)]) { $0.int(0) }.first != nil else {
                    throw RAGError.noAnswer(path: path, id: id)
                }
                answer = id
            } else {
                guard let last = try db.query("SELECT max(id) FROM answers") { $0.isNull(0) ? nil : $0.int(0) }.first ?? nil else {
                    throw RAGError.noAnswer(path: path, id: nil)
                }
                answer = last
            }
            try db.run("INSERT INTO feedback (answer, given_at, verdict, correction) VALUES (?, ?, ?, ?)",
                       [.int(answer), .text(Self.timestamp()), .text(verdict.rawValue), .optional(correction)])
            return answer
        }
    }

    /// What export-feedback writes and leaves out.
    public struct TrainingExport {
        /// One chat per answer: the messages the model saw, then the accepted answer or the correction.
        public var chats: [[ChatTemplate.Message]] = []
        public var accepted = 0
        public var corrected = 0
        /// Answers whose newest feedback rejects them without a correction.
        public var rejected = 0
    }

    /// The training chats of every answer whose newest feedback accepts it or corrects it, in answer order.
    public func trainingChats() throws -> TrainingExport {
        let rows = try db.query("""
            SELECT a.messages, a.answer, f.verdict, f.correction FROM answers a
            JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE answer = a.id)
            ORDER BY a.id
            """) { ($0.text(0), $0.text(1), $0.text(2), $0.optionalText(3)) }
        var export = TrainingExport()
        for (messages, answer, verdict, correction) in rows {
            let target: String
            if let correction {
                target = correction
                export.corrected += 1
            } else if verdict == Verdict.accept.rawValue {
                target = answer
                export.accepted += 1
            } else {
                export.rejected += 1
                continue
            }
            export.chats.append(try storedMessages(messages) + [ChatTemplate.Message(role: "assistant", content: target)])
        }
        return export
    }

    /// An answer's stored chat, question, answer and sources.
    public func answer(_ id: Int) throws -> (question: String, messages: [ChatTemplate.Message], answer: String, sources: [String]) {
        guard let row = try db.query("SELECT question, messages, answer FROM answers WHERE id = ?", [.int(id)], row: { ($0.text(0), $0.text(1), $0.text(2)) }).first else {
            throw RAGError.noAnswer(path: path, id: id)
        }
        let sources = try db.query("SELECT source FROM answer_sources WHERE answer = ? ORDER BY rank", [.int(id)]) { $0.text(0) }
        return (row.0, try storedMessages(row.1), row.2, sources)
    }

    /// `{"messages": [...]}` as finetune's chat format reads it, one line.
    public static func chatRecord(_ messages: [ChatTemplate.Message]) -> String {
        "{\"messages\":" + json(messages) + "}"
    }

    static func json(_ messages: [ChatTemplate.Message]) -> String {
        "[" + messages.map { "{\"role\":" + JSONText.serialize($0.role) + ",\"content\":" + JSONText.serialize($0.content) + "}" }.joined(separator: ",") + "]"
    }

    func storedMessages(_ json: String) throws -> [ChatTemplate.Message] {
        let list = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [[String: String]]
        guard let list, list.allSatisfy({ $0["role"] != nil && $0["content"] != nil }) else {
            throw RAGError.notADatabase(path: path, detail: "an answer's messages are not a JSON list of role/content objects")
        }
        return list.map { ChatTemplate.Message(role: $0["role"]!, content: $0["content"]!) }
    }
}
