import LQRAG
import Testing

struct ChunkerTests {
    static let text = """
        Paris is the capital of France. Mr. Smith lives there!
        Does he like it? He does.

        The second paragraph has one sentence.
        \t
        Third: a lone line, no end mark
        """

    @Test func sentencesNeverCrossParagraphs() throws {
        let chunker = Chunker(chunking: .sentences(2)) { _ in 1 }
        let chunks = try chunker.chunks(of: Self.text)
        // ICU keeps "Mr. Smith" together; a passage of a wrapped paragraph spans its lines.
        #expect(chunks == [
            Chunk(text: "Paris is the capital of France. Mr. Smith lives there!", line: 1),
            Chunk(text: "Does he like it? He does.", line: 2),
            Chunk(text: "The second paragraph has one sentence.", line: 4),
            Chunk(text: "Third: a lone line, no end mark", line: 6),
        ])
        let three = try Chunker(chunking: .sentences(3)) { _ in 1 }.chunks(of: Self.text, firstLine: 10)
        #expect(three.map(\.text).first == "Paris is the capital of France. Mr. Smith lives there!\nDoes he like it?")
        #expect(three.map(\.line) == [10, 11, 13, 15])
    }

    @Test func tokensPackWholeWords() throws {
        // Each word costs its length in "tokens".
        let chunker = Chunker(chunking: .tokens(10)) { $0.count }
        let chunks = try chunker.chunks(of: "aaaa bbb cc d\neeeeeeeeeeee ff\n\nggg")
        #expect(chunks == [
            Chunk(text: "aaaa bbb cc d", line: 1),
            Chunk(text: "eeeeeeeeeeee", line: 2),
            Chunk(text: "ff", line: 2),
            Chunk(text: "ggg", line: 4),
        ])
    }

    @Test func chunkingSpecs() throws {
        #expect(try Chunking("sentences:2") == .sentences(2))
        #expect(try Chunking("tokens:128") == .tokens(128))
        for bad in ["sentences", "sentences:0", "words:3", "tokens:x", "tokens:1:2"] {
            #expect(throws: RAGError.badChunking(bad)) { try Chunking(bad) }
        }
    }

    @Test func emptyAndBlankTextHasNoPassages() throws {
        let chunker = Chunker(chunking: .sentences(2)) { _ in 1 }
        #expect(try chunker.chunks(of: "").isEmpty)
        #expect(try chunker.chunks(of: " \n\t\n").isEmpty)
    }
}
