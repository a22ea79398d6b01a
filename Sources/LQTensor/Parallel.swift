import CKernels
import Foundation

/// Our own parallel loops, on the spinning thread pool of lq_pool.h. The thread count comes from
/// `LQLORA_NUM_THREADS` or the number of active cores; `configure` also sizes OpenBLAS so one does
/// not oversubscribe the other.
public enum Parallel {
    nonisolated(unsafe) public private(set) static var threadCount: Int = defaultThreadCount()

    public static func defaultThreadCount() -> Int {
        if let s = ProcessInfo.processInfo.environment["LQLORA_NUM_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Sets our thread count and OpenBLAS's to `threads` (default: `defaultThreadCount()`).
    public static func configure(threads: Int? = nil) {
        threadCount = max(1, threads ?? defaultThreadCount())
        BLASThreads.set(threadCount)
    }

    /// How long idle workers wait spinning for the next loop, in microseconds (lq_pool.h): worth it
    /// for decoding, whose small loops follow each other within microseconds; 0 (the default)
    /// for batch work, where spinning only slows OpenBLAS's threads. LQLORA_SPIN_US overrides.
    public static var spinMicroseconds: Int {
        get { Int(lq_pool_spin_us()) }
        set { lq_pool_set_spin_us(Int32(newValue)) }
    }

    /// Calls `body` on disjoint chunks covering 0..<count, in parallel when there is enough work.
    /// Chunks hold at least `minChunk` items so tiny loops stay on the calling thread.
    public static func forEach(_ count: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        if count <= 0 { return }
        let chunks = min(threadCount, max(1, count / max(1, minChunk)))
        if chunks == 1 {
            body(0..<count)
            return
        }
        withoutActuallyEscaping(body) { body in
            var job = Job(count: count, chunks: chunks, body: body)
            withUnsafeMutablePointer(to: &job) { pointer in
                lq_pool_run(Int32(chunks), Int64(chunks), { context, c in
                    let job = context!.assumingMemoryBound(to: Job.self)
                    let lo = job.pointee.count * Int(c) / job.pointee.chunks, hi = job.pointee.count * (Int(c) + 1) / job.pointee.chunks
                    if lo < hi { job.pointee.body(lo..<hi) }
                }, pointer)
            }
        }
    }

    /// One loop as the pool's C callback sees it.
    private struct Job {
        let count: Int
        let chunks: Int
        let body: (Range<Int>) -> Void
    }
}
