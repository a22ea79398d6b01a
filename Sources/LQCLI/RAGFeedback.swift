import ArgumentParser
import Foundation
import LQFormats
import LQRAG

/// `lqlora rag feedback`.
struct RAGFeedback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback",
        abstract: "Accept or reject an answer (the newest unless --answer), optionally with a correction; stored in the database.",
        discussion: "The newest feedback on an answer is the one export-feedback reads.")

    @Option(help: "The database file.")
    var db: String

    @Flag(help: "The answer is good.")
    var accept = false

    @Flag(help: "The answer is wrong.")
    var reject = false

    @Option(help: "What the answer should have been (exported in its place).")
    var correction: String?

    @Option(parsing: .unconditional, help: "The answer's id, as rag ask printed it (default: the newest).")
    var answer: Int?

    func validate() throws {
        guard accept != reject else { throw ValidationError("give one of --accept and --reject") }
        if let correction, correction.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw ValidationError("--correction is empty") }
    }

    func run() throws {
        try CommandFailure.exits("rag feedback") {
            let database = try RAGDatabase.open(db)
            let id = try database.giveFeedback(answer: answer, verdict: accept ? .accept : .reject, correction: correction)
            print("answer \(id): \(accept ? "accepted" : "rejected")" + (correction == nil ? "" : ", with a correction"))
        }
    }
}

/// `lqlora rag export-feedback`.
struct RAGExportFeedback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-feedback",
        abstract: "Write the accepted and corrected answers as chat records ({\"messages\": [...]}) that lqlora finetune trains on.",
        discussion: """
            Each record is the chat the model saw (the references and the question) and, as the assistant's \
            turn, the accepted answer or the correction. Answers whose newest feedback rejects them without a \
            correction are left out.
            """)

    @Option(help: "The database file.")
    var db: String

    @Option(help: "The JSON lines file to write.")
    var out: String

    func run() throws {
        try CommandFailure.exits("rag export-feedback") {
            let database = try RAGDatabase.open(db)
            let export = try database.trainingChats()
            guard !export.chats.isEmpty else { throw RAGError.nothingToExport(path: db) }
            try Data(export.chats.map { RAGDatabase.chatRecord($0) + "\n" }.joined().utf8).writeAtomically(to: out)
            print("wrote \(export.chats.count) chat record\(export.chats.count == 1 ? "" : "s") to \(out) (\(export.accepted) accepted, \(export.corrected) corrected"
                + (export.rejected > 0 ? "; \(export.rejected) rejected without a correction left out" : "") + ")")
        }
    }
}
