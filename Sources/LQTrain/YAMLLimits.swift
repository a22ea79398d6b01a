import CYaml  // the libyaml that Yams bundles (its CYaml target): its event parser, nothing built
import Foundation

/// Limits checked on a YAML document before Yams builds it. Yams turns a document into nested
/// Swift values recursively and expands every alias where it is used, so a document of a few
/// hundred bytes whose anchors repeat one another ("billion laughs") would grow without bound,
/// and a deep one would recurse as deep. libyaml's events are walked here without recursion,
/// counting each alias as the nodes it stands for, and such a document is refused by name.
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
            var open: [(anchor: String?, start: Int)] = []  // collections begun, with the node count before them
            var total = 0
            func name(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? { p.map { String(cString: $0) } }
            while true {
                var event = yaml_event_t()
                // A syntax error is left to Yams, which reports it with its line.
                guard yaml_parser_parse(&parser, &event) == 1 else { return }
                defer { yaml_event_delete(&event) }
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return
                case YAML_SCALAR_EVENT:
                    total += 1
                    if let a = name(event.data.scalar.anchor) { expanded[a] = 1 }
                case YAML_ALIAS_EVENT:
                    total += name(event.data.alias.anchor).flatMap { expanded[$0] } ?? 1
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor = event.type == YAML_SEQUENCE_START_EVENT ? name(event.data.sequence_start.anchor) : name(event.data.mapping_start.anchor)
                    open.append((anchor, total))
                    total += 1
                    guard open.count <= maxDepth else {
                        throw ConfigError.unreadable(path: path, detail: "nests more than \(maxDepth) levels deep (line \(event.start_mark.line + 1))")
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    if let begun = open.popLast(), let a = begun.anchor { expanded[a] = total - begun.start }
                default:
                    break
                }
                guard total <= maxNodes else {
                    throw ConfigError.unreadable(path: path, detail: "expands to more than \(maxNodes) values through its aliases (anchors & repeated by aliases *; line \(event.start_mark.line + 1))")
                }
            }
        }
    }
}
