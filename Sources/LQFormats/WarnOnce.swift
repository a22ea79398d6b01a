import Foundation

/// Prints each distinct message once per process (on stderr).
public enum WarnOnce {
    nonisolated(unsafe) private static var said = Set<String>()
    private static let lock = NSLock()

    public static func say(_ message: String) {
        lock.lock()
        defer { lock.unlock() }
        if said.insert(message).inserted { FileHandle.standardError.write(Data((message + "\n").utf8)) }
    }
}
