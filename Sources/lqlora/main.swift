import CKernels
#if canImport(Glibc)
import Glibc

// OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it is loaded, before any Swift code runs. Our
// own products run OpenBLAS single-threaded, but the benchmarks' anchors let it use its threads,
// which by default then spin for a long while and take the cores the next figure measures (and
// our own loops need). A timeout of 2^18 cycles sends them to sleep within a fraction of a
// millisecond. Re-execute once with it set, unless the user chose a value.
if getenv("OPENBLAS_THREAD_TIMEOUT") == nil {
    setenv("OPENBLAS_THREAD_TIMEOUT", "18", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)  // returns only on failure: carry on as we are
}
// Activations of a few MiB are allocated and freed many times a step. Left to its defaults, glibc
// serves them with fresh mmaps or gives freed heap back to the kernel, and every reuse then pays
// for the kernel zeroing new pages (6% of a training step). Keep them in the heap instead.
lq_keep_freed_memory()
#endif
import LQCLI

LQLoRA.main()
