import ArgumentParser
import Foundation
import LQDistributed
import LQFormats

/// How every command's failure reaches the user. A usage error (ValidationError, exit 64) or an
/// exit code a command chose passes through to the argument parser; any other error becomes one
/// line on stderr, "lqlora <command>: error: <what>", and `code` (1 unless the command says);
/// a file-system error from Foundation is said in plain words with its path.
enum CommandFailure {
    /// Runs `body` as the command `name` and returns its value; `context` goes before the message
    /// (e.g. the config file), `beforeMessage` runs first (e.g. to end a progress line).
    @discardableResult
    static func exits<T>(_ name: String, code: ExitCode = .failure, context: String? = nil,
                         beforeMessage: () -> Void = {}, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ValidationError {
            throw error
        } catch let error as ExitCode {
            throw error
        } catch ClusterError.rootFailed where !Cluster.world.isRoot {
            throw code  // rank 0 says what failed
        } catch {
            beforeMessage()
            printError("lqlora \(name): error: " + (context.map { "\($0): " } ?? "") + FileSystemFailure.describe(error))
            throw code
        }
    }
}
