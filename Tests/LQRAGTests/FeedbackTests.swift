import Foundation
import LQModel
import LQRAG
import Testing

/// Answers and feedback in the database, and the chats export-feedback makes of them.
struct FeedbackTests {
    func answered(_ n: Int) throws -> (Workspace, RAGDatabase) {
        let w = Workspace()
        try w.write("a.txt", "Rome was founded in 753 BC. It is the capital of Italy.")
        let db = try RAGDatabase.open(w.db, create: true)
        let embedder = try SentenceEmbedder(directory: tinyBert)
        let identity = try EmbedderIdentity(embedder: embedder, directory: tinyBert)
        _ = try Indexer(embedder: embedder, identity: identity, options: Indexer.Options()).run(docs: w.docs, into: db)
        let retriever = try Retriever(database: db, embedder: embedder, identity: identity)
        for i in 1...n {
            let question = "Question \(i)?"
            let sources = try retriever.retrieve(question, options: Retriever.Options())
            let messages = RAGPrompt.messages(question: question, passages: sources.map(\.passage))
            #expect(try db.storeAnswer(question: question, messages: messages, answer: "Answer \(i).", model: "m", adapter: nil, judge: .qim, sources: sources) == i)
        }
        return (w, db)
    }

    @Test func theNewestFeedbackDecidesWhatIsExported() throws {
        let (w, db) = try answered(4)
        try db.giveFeedback(answer: 1, verdict: .accept, correction: nil)
        try db.giveFeedback(answer: 2, verdict: .reject, correction: "Corrected 2.")
        try db.giveFeedback(answer: 3, verdict: .accept, correction: nil)
        #expect(try db.giveFeedback(answer: nil, verdict: .reject, correction: nil) == 4)  // the newest answer
        try db.giveFeedback(answer: 3, verdict: .reject, correction: nil)  // changed its mind
        let export = try db.trainingChats()
        #expect(export.accepted == 1 && export.corrected == 1 && export.rejected == 2)
        #expect(export.chats.map { $0.last! } == [.init(role: "assistant", content: "Answer 1."), .init(role: "assistant", content: "Corrected 2.")])
        // The user's turn is the chat the model saw: the references, then the question.
        let user = export.chats[0][0]
        #expect(user.role == "user" && user.content.hasPrefix("References:\n[1] Rome was founded in 753 BC. It is the capital of Italy.\n\n")
            && user.content.hasSuffix("answer the question: Question 1?"), "\(user.content)")
        let stored = try db.answer(2)
        #expect(stored.question == "Question 2?" && stored.answer == "Answer 2." && stored.sources.count == 1 && stored.sources[0].hasSuffix("a.txt:1"))
        // A record reads back as the chat it was.
        let record = try JSONSerialization.jsonObject(with: Data(RAGDatabase.chatRecord(export.chats[1]).utf8)) as! [String: [[String: String]]]
        #expect(record["messages"]!.map { $0["role"]! } == ["user", "assistant"] && record["messages"]![1]["content"] == "Corrected 2.")
        _ = w
    }

    @Test func feedbackNeedsAnAnswer() throws {
        let (w, db) = try answered(1)
        #expect(throws: RAGError.noAnswer(path: w.db, id: 7)) { try db.giveFeedback(answer: 7, verdict: .accept, correction: nil) }
        #expect(throws: RAGError.noAnswer(path: w.db, id: 9)) { try db.answer(9) }
        #expect(try db.trainingChats().chats.isEmpty)
        let empty = Workspace()
        let fresh = try RAGDatabase.open(empty.db, create: true)
        #expect(throws: RAGError.noAnswer(path: empty.db, id: nil)) { try fresh.giveFeedback(answer: nil, verdict: .accept, correction: nil) }
    }
}
