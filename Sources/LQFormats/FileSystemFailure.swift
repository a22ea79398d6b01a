import Foundation

/// Foundation's file errors in plain words with the path they concern, instead of
/// "NSCocoaErrorDomain Code=516 …": what the user reads when a file-system step fails.
public enum FileSystemFailure {
    /// "PATH: REASON" for a Foundation file error, or the error's own description for anything else.
    public static func describe(_ error: Error) -> String {
        let ns = error as NSError
        guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return "\(error)" }
        let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        return (path.map { "\($0): " } ?? "") + reason(error)
    }

    /// The reason alone, in words ("no space left on the device").
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return posix(Int32(ns.code)) }
        guard ns.domain == NSCocoaErrorDomain else { return "\(error)" }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return posix(Int32(underlying.code))
        }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or directory"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteFileExists: return "a file or directory of that name already exists"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileWriteVolumeReadOnly: return "the file system is read-only"
        case .fileReadCorruptFile: return "the file is damaged or not in the expected format"
        default: return ns.localizedDescription
        }
    }

    private static func posix(_ code: Int32) -> String {
        switch code {
        case EEXIST: return "a file or directory of that name already exists"
        case ENOSPC: return "no space left on the device"
        case EDQUOT: return "the disk quota is exhausted"
        case EROFS: return "the file system is read-only"
        case EACCES, EPERM: return "permission denied"
        case ENOENT: return "no such file or directory"
        case ENOTDIR: return "a part of the path is a file, not a directory"
        case EISDIR: return "it is a directory"
        default: return String(cString: strerror(code))
        }
    }
}
