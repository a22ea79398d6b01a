import ArgumentParser
import Foundation
import LQFormats
import LQModel
import LQRAG

/// `lqlora rag ask`: retrieve, judge, answer from the best passages, record the answer.
struct RAGAsk: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ask",
        abstract: "Answer a question from the indexed passages: retrieve, judge, generate with the model's chat template, print the sources.",
        discussion: """
            The answer is stored in the database with the chat the model saw and its sources; \
            `lqlora rag feedback` then accepts, rejects or corrects it.
            """)

    @Option(help: "The database file.")
    var db: String

    @OptionGroup var embedderOptions: EmbedderOptions

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "The question.")
    var question: String

    @Option(help: "A system message (default: the chat template's own, if any).")
    var system: String?

    @OptionGroup var retrieval: RetrievalOptions

    @OptionGroup var sampling: SamplingOptions

    @OptionGroup var activationOptions: ActivationOptions

    func run() throws {
        try CommandFailure.exits("rag ask") {
            modelOptions.threadOptions.configure()  // before embedding the question
            let database = try RAGDatabase.open(db)
            let (embedder, identity) = try embedderOptions.load()
            let retriever = try Retriever(database: database, embedder: embedder, identity: identity)
            if embedder.tokenize(question).truncated {
                printError("warning: the question is longer than the embedder's \(embedder.maxLength) tokens: it is retrieved by its beginning")
            }
            let options = retrieval.options
            let judged = Array(try retriever.retrieve(question, options: options).prefix(options.topN))
            let (model, tokenizer) = try modelOptions.load(projections: .asStored, activations: try activationOptions.path(batches: false))
            let messages = RAGPrompt.messages(question: question, passages: judged.map(\.passage), system: system)
            let prompt = try ChatPrompt(messages: messages, modelDirectory: modelOptions.model, tokenizer: tokenizer)
            let positions = model.config.maxPositions
            guard prompt.ids.count < positions else {
                let alone = try ChatPrompt(messages: RAGPrompt.messages(question: question, passages: [], system: system), modelDirectory: modelOptions.model, tokenizer: tokenizer)
                throw CLIError("the prompt is \(Format.grouped(prompt.ids.count)) tokens (\(Format.grouped(alone.ids.count)) without the references) and the model reads \(Format.grouped(positions)) positions: ask a shorter question or give fewer passages (--top-n); nothing was stored")
            }
            let (answer, result) = try sampling.stream(model, tokenizer: tokenizer, prompt: prompt.ids, chat: prompt.template)
            let id = try database.storeAnswer(question: question, messages: messages, answer: answer, model: modelOptions.model,
                                              adapter: modelOptions.adapter, judge: options.judge, sources: judged)
            var out = "\nsources (\(options.judge.rawValue) judge, best \(judged.count) of \(options.candidates) candidates by \(options.exact ? "exact search" : "HNSW")):\n"
            for (i, c) in judged.enumerated() {
                out += String(format: "  [%d] %@  qim %.3f  cosine %.4f  ", i + 1, c.passage.source, c.qim, c.cosine) + JSONText.serialize(Embed.preview(c.passage.text)) + "\n"
            }
            out += "answer \(id) stored in \(db) (lqlora rag feedback --db \(db) --accept, or --reject [--correction \"…\"])"
            FileHandle.standardOutput.write(Data((out + "\n").utf8))  // unbuffered, as the streamed answer
            SamplingOptions.summarize(promptTokens: prompt.ids.count, result)
        }
    }
}
