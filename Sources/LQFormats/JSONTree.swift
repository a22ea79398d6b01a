import Foundation

/// An `Encodable` value as the tree of objects, arrays and scalars that `JSONText.serialize`
/// writes. JSONEncoder cannot serve: it writes 3.0 as 3, and our files keep floats as floats.
/// Optionals follow Codable's rule: `encodeIfPresent` (the synthesized default) leaves a nil out,
/// `encode` writes null.
public enum JSONTree {
    public static func encode<T: Encodable>(_ value: T) throws -> Any {
        let node = Node()
        try value.encode(to: TreeEncoder(node: node, codingPath: []))
        return node.tree
    }

    /// Writes `value` as `JSONText` with sorted keys, atomically.
    public static func write<T: Encodable>(_ value: T, to path: String) throws {
        try Data((JSONText.serialize(try encode(value)) + "\n").utf8).writeAtomically(to: path)
    }
}

/// One value of the tree being built: a scalar, an object or an array.
private final class Node {
    var scalar: Any?
    var object: [String: Node]?
    var array: [Node]?

    var tree: Any {
        if let object { return object.mapValues(\.tree) }
        if let array { return array.map(\.tree) }
        return scalar ?? NSNull()
    }
}

private struct TreeEncoder: Encoder {
    let node: Node
    var codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if node.object == nil { node.object = [:] }
        return KeyedEncodingContainer(KeyedTree<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if node.array == nil { node.array = [] }
        return UnkeyedTree(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { SingleTree(node: node, codingPath: codingPath) }
}

private struct KeyedTree<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: Node
    var codingPath: [CodingKey]

    private func child(_ key: Key) -> Node {
        let n = Node()
        node.object![key.stringValue] = n
        return n
    }

    mutating func encodeNil(forKey key: Key) throws { child(key).scalar = NSNull() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { child(key).scalar = value }
    mutating func encode(_ value: String, forKey key: Key) throws { child(key).scalar = value }
    mutating func encode(_ value: Double, forKey key: Key) throws { child(key).scalar = value }
    mutating func encode(_ value: Float, forKey key: Key) throws { child(key).scalar = value }
    mutating func encode(_ value: Int, forKey key: Key) throws { child(key).scalar = value }
    mutating func encode(_ value: Int8, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { child(key).scalar = Int(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try value.encode(to: TreeEncoder(node: child(key), codingPath: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        TreeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        TreeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> Encoder { TreeEncoder(node: node, codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> Encoder { TreeEncoder(node: child(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedTree: UnkeyedEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]
    var count: Int { node.array!.count }

    private func next() -> Node {
        let n = Node()
        node.array!.append(n)
        return n
    }

    mutating func encodeNil() throws { next().scalar = NSNull() }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try value.encode(to: TreeEncoder(node: next(), codingPath: codingPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        TreeEncoder(node: next(), codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { TreeEncoder(node: next(), codingPath: codingPath).unkeyedContainer() }
    mutating func superEncoder() -> Encoder { TreeEncoder(node: next(), codingPath: codingPath) }
}

/// A scalar: Int and Double stay apart, so JSONText writes 3 and 3.0 as given.
private struct SingleTree: SingleValueEncodingContainer {
    let node: Node
    var codingPath: [CodingKey]

    mutating func encodeNil() throws { node.scalar = NSNull() }
    mutating func encode(_ value: Bool) throws { node.scalar = value }
    mutating func encode(_ value: String) throws { node.scalar = value }
    mutating func encode(_ value: Double) throws { node.scalar = value }
    mutating func encode(_ value: Float) throws { node.scalar = value }
    mutating func encode(_ value: Int) throws { node.scalar = value }
    mutating func encode(_ value: Int8) throws { node.scalar = Int(value) }
    mutating func encode(_ value: Int16) throws { node.scalar = Int(value) }
    mutating func encode(_ value: Int32) throws { node.scalar = Int(value) }
    mutating func encode(_ value: Int64) throws { node.scalar = Int(value) }
    mutating func encode(_ value: UInt) throws { node.scalar = Int(value) }
    mutating func encode(_ value: UInt8) throws { node.scalar = Int(value) }
    mutating func encode(_ value: UInt16) throws { node.scalar = Int(value) }
    mutating func encode(_ value: UInt32) throws { node.scalar = Int(value) }
    mutating func encode(_ value: UInt64) throws { node.scalar = Int(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try value.encode(to: TreeEncoder(node: node, codingPath: codingPath)) }
}
