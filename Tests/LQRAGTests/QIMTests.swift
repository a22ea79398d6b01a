import Foundation
import LQRAG
import Testing

let ragFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

/// The Quantized Influence Measure against the reference formula in numpy (scripts/make-qim-fixtures.py).
struct QIMTests {
    struct Case {
        let name: String
        let k: Int
        let query: [Float]
        let passage: [Float]
        let score: Double
        let swapped: Double
        let guarded: Bool
    }

    static let cases: [Case] = {
        let data = FileManager.default.contents(atPath: ragFixtures + "/qim.json")!
        let root = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (root["cases"] as! [[String: Any]]).map {
            Case(name: $0["name"] as! String, k: $0["k"] as! Int, query: ($0["query"] as! [NSNumber]).map(\.floatValue),
                 passage: ($0["passage"] as! [NSNumber]).map(\.floatValue), score: ($0["score"] as! NSNumber).doubleValue,
                 swapped: ($0["swapped"] as! NSNumber).doubleValue, guarded: $0["guarded"] as! Bool)
        }
    }()

    @Test func scoresEqualTheReference() {
        #expect(Self.cases.count >= 12)
        for c in Self.cases {
            let got = QIM.score(query: c.query, passage: c.passage, levels: c.k)
            #expect(abs(got - c.score) <= 1e-9 * max(1, abs(c.score)), "\(c.name): \(got) against \(c.score)")
        }
    }

    /// The query's levels group the passage's coordinates, not the other way round: on the cases
    /// where the order matters, the exchanged score is far from ours.
    @Test func theQueryIsTheFirstArgument() {
        let asymmetric = Self.cases.filter { abs($0.score - $0.swapped) > 1e-3 * max(1, abs($0.score)) }
        #expect(asymmetric.count >= 8)
        for c in asymmetric {
            let got = QIM.score(query: c.query, passage: c.passage, levels: c.k)
            #expect(abs(got - c.swapped) > 1e-6, "\(c.name)")
        }
    }

    /// Where the reference divides by zero (a constant vector), the score is 0, finite.
    @Test func constantVectorsScoreZero() {
        let guarded = Self.cases.filter(\.guarded)
        #expect(guarded.count == 2)
        for c in guarded { #expect(QIM.score(query: c.query, passage: c.passage, levels: c.k) == 0, "\(c.name)") }
        #expect(QIM.quantize([Float](repeating: 0.3, count: 5), levels: 16) == [0, 0, 0, 0, 0])
    }

    /// numpy's round: halves go to the even level.
    @Test func quantizationRoundsHalvesToEven() {
        #expect(QIM.quantize([0, 1, 3, 4, 2] as [Float], levels: 3) == [0, 0, 2, 2, 1])
        #expect(QIM.quantize([-1, 1] as [Float], levels: 16) == [0, 15])
    }
}
