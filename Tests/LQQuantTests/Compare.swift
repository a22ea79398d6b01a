import Testing

/// Expects two arrays to be identical, reporting the mismatch count and the first differences
/// instead of dumping whole arrays.
func expectIdentical<T: Equatable>(_ got: [T], _ expected: [T], _ label: String,
                                   sourceLocation: SourceLocation = #_sourceLocation) {
    guard got.count == expected.count else {
        Issue.record("\(label): \(got.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    let bad = got.indices.filter { got[$0] != expected[$0] }
    if !bad.isEmpty {
        let first = bad.prefix(3).map { "[\($0)] \(got[$0]) vs \(expected[$0])" }.joined(separator: ", ")
        Issue.record("\(label): \(bad.count) of \(got.count) differ; \(first)", sourceLocation: sourceLocation)
    }
}
