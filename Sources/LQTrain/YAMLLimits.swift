import CYaml  // the libyaml that Yams bundles (its CYaml target): its event parser, nothing built
import Foundation

/// Limits checked on a YAML document before Yams builds it. Yams turns a document into nested
/// Swift values recursively and expands every alias where it is used, so a document of a few
/// hundred bytes whose anchors repeat one another ("billion laughs") would grow without bound,
/// and a deep one would recurse as deep. libyaml's events are walked here without recursion,
/// counting each alias as the nodes it stands for, and such a document is refused by name. So is
/// a mapping key that is itself a list or mapping (`? [a]: 1`), on which Yams 6.2 traps.
enum YAMLLimits {
    /// Far deeper than a config needs (two levels and a list).
    static let maxDepth = 32
    /// Nodes of the document with every alias expanded.
    static let maxNodes = 100_000

    static func check(_ text: String, path: String) throws {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        try bytes.withUnsafeMutableBufferPointer { buffer in
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var expanded: [String: Int] = [:]  // anchor → nodes it stands for
            var open: [(anchor: String?, start: Int, mapping: Bool)] = []  // collections begun, with the node count before them
            var collections = Set<String>()  // anchors of lists and mappings
            var nextIsKey: [Bool] = []  // per open collection: a mapping's next node is a key
            var total = 0
            func name(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? { p.map { String(cString: $0) } }
            /// A node begins: a key that is a collection is refused.
            func begin(collection: Bool, line: Int) throws {
                guard let open = open.last, open.mapping, nextIsKey.last == true else { return }
                if collection { throw ConfigError.unreadable(path: path, detail: "has a key that is a list or mapping (line \(line)); keys must be plain names") }
            }
            /// A node ended: in a mapping, keys and values alternate.
            func end() { if let last = nextIsKey.indices.last, open[last].mapping { nextIsKey[last].toggle() } }
            while true {
                var event = yaml_event_t()
                // A syntax error is left to Yams, which reports it with its line.
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                let line = event.start_mark.line + 1
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_SCALAR_EVENT:
                    total += 1
                    if let a = name(event.data.scalar.anchor) { expanded[a] = 1; collections.remove(a) }
                    end()
                case YAML_ALIAS_EVENT:
                    let a = name(event.data.alias.anchor)
                    try begin(collection: a.map { collections.contains($0) } ?? false, line: line)
                    total += a.flatMap { expanded[$0] } ?? 1
                    end()
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    try begin(collection: true, line: line)
                    let mapping = event.type == YAML_MAPPING_START_EVENT
                    open.append((mapping ? name(event.data.mapping_start.anchor) : name(event.data.sequence_start.anchor), total, mapping))
                    nextIsKey.append(true)
                    total += 1
                    guard open.count <= maxDepth else {
                        throw ConfigError.unreadable(path: path, detail: "nests more than \(maxDepth) levels deep (line \(line))")
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    nextIsKey.removeLast()
                    if let begun = open.popLast(), let a = begun.anchor { expanded[a] = total - begun.start; collections.insert(a) }
                    end()
                default:
                    break
                }
                guard total <= maxNodes else {
                    throw ConfigError.unreadable(path: path, detail: "expands to more than \(maxNodes) values through its aliases (anchors & repeated by aliases *; line \(line))")
                }
            }
        }
    }
}
