import ArgumentParser
import Foundation
import LQModel

/// `lqlora tokenize`: what the model's tokenizer makes of a text.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids (or pieces) of a text under a model's tokenizer.")

    @Option(help: "The model directory (its tokenizer.json).")
    var model: String

    @Option(help: "The text.")
    var text: String?

    @Option(help: "A file to read the text from (.txt, .jsonl, .gz) instead of --text.")
    var file: String?

    @Option(parsing: .unconditional, help: "Only the first N characters (code points).")
    var maxChars: Int?

    @Flag(help: "Do not add the post-processor's special tokens.")
    var noSpecialTokens = false

    @Flag(help: "Print the decoded piece of each token instead of ids.")
    var pieces = false

    func validate() throws {
        if let maxChars, maxChars < 0 { throw ValidationError("--max-chars must not be negative") }
    }

    func run() throws {
        try CommandFailure.exits("tokenize") {
            let tokenizer = try loadTokenizer(directory: model)
            var input: String
            if let text { input = text } else if let file { input = try EvaluationText.read(path: file) } else {
                throw CLIError("give --text or --file")
            }
            if let maxChars { input = String(String.UnicodeScalarView(input.unicodeScalars.prefix(maxChars))) }
            let ids = try tokenizer.encode(input, addSpecialTokens: !noSpecialTokens)
            if pieces {
                print(ids.map { tokenizer.decode([$0], skipSpecialTokens: false).debugDescription }.joined(separator: " "))
            } else {
                print(ids.map(String.init).joined(separator: " "))
            }
            printError("\(ids.count) tokens")
        }
    }
}
