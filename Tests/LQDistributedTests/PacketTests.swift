import LQDistributed
import Testing

/// The bytes ranks exchange, and the one-process communicator the code runs on without mpirun.
struct PacketTests {
    @Test func valuesComeBackInTheOrderWritten() throws {
        var p = Packet()
        p.append(-7)
        p.append(0.1)
        p.append([Float]([1.5, -0.0, .infinity, .leastNonzeroMagnitude]))
        p.append(Array("checkpoint-3".utf8))
        p.append([Double]([.pi, -1e-300]))
        var r = Packet.Reader(p.bytes)
        #expect(try r.int() == -7)
        #expect(try r.double() == 0.1)
        let floats = try r.floats()
        #expect(floats.map(\.bitPattern) == [Float]([1.5, -0.0, .infinity, .leastNonzeroMagnitude]).map(\.bitPattern))
        #expect(String(decoding: try r.bytes(), as: UTF8.self) == "checkpoint-3")
        #expect(try r.doubles() == [.pi, -1e-300])
        #expect(r.isAtEnd)
    }

    @Test func aTruncatedPacketIsNamedNotRead() throws {
        var p = Packet()
        p.append([Float](repeating: 1, count: 10))
        var r = Packet.Reader(Array(p.bytes.prefix(20)))
        #expect(throws: ClusterError.self) { try r.floats() }
        var empty = Packet.Reader([])
        #expect(throws: ClusterError.self) { try empty.int() }
    }

    @Test func oneProcessIsAJobOfOne() throws {
        let c = SingleProcess()
        #expect(c.rank == 0 && c.size == 1 && c.isRoot)
        var values: [Float] = [1, 2]
        values.withUnsafeMutableBufferPointer { c.allreduceSum($0) }
        #expect(values == [1, 2])
        #expect(c.gather([3, 4], root: 0)! == [[3, 4]])
        #expect(try c.onRoot { 42 } == 42)
        #expect(c.any(true) && !c.any(false))
        struct Refused: Error {}
        #expect(throws: Refused.self) { try c.onRoot { () throws -> Int in throw Refused() } }
    }
}
