import CKernels
import Foundation

/// Our own parallel loops, on the spinning thread pool of lq_pool.h. The thread count comes from
/// `LQLORA_NUM_THREADS` or the number of active cores. OpenBLAS stays single-threaded inside them
/// (see `BLASTiling`), so the two never oversubscribe the cores.
public enum Parallel {
    nonisolated(unsafe) public private(set) static var threadCount: Int = defaultThreadCount()

    public static func defaultThreadCount() -> Int {
        if let s = ProcessInfo.processInfo.environment["LQLORA_NUM_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Sets our thread count to `threads` (default: `defaultThreadCount()`). OpenBLAS stays single-threaded:
    /// large products are tiled over these threads (see `gemm`).
    public static func configure(threads: Int? = nil) {
        threadCount = max(1, threads ?? defaultThreadCount())
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

    /// Calls `body` once for each of `tasks` tasks, which the threads take in turn. Unlike `forEach`,
    /// the work of each call does not depend on the thread count (what `gemm`'s fixed tiles need).
    public static func forTasks(_ tasks: Int, _ body: (Int) -> Void) {
        if tasks <= 0 { return }
        let threads = min(threadCount, tasks)
        if threads == 1 {
            for t in 0..<tasks { body(t) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var list = TaskList(body: body)
            withUnsafeMutablePointer(to: &list) { pointer in
                lq_pool_run(Int32(threads), Int64(tasks), { context, t in
                    context!.assumingMemoryBound(to: TaskList.self).pointee.body(Int(t))
                }, pointer)
            }
        }
    }

    private struct TaskList {
        let body: (Int) -> Void
    }

    /// One loop as the pool's C callback sees it.
    private struct Job {
        let count: Int
        let chunks: Int
        let body: (Range<Int>) -> Void
    }
}
