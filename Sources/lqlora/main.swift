#if canImport(Glibc)
import Glibc

// OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when it is loaded, before any Swift code runs. By
// default its idle workers spin for a long while after each call and take the cores our own loops
// (attention, norms, activations) need between BLAS calls; a timeout of 2^18 cycles measured about
// 10% faster evaluation on 2 cores. Re-execute once with it set, unless the user chose a value.
if getenv("OPENBLAS_THREAD_TIMEOUT") == nil {
    setenv("OPENBLAS_THREAD_TIMEOUT", "18", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)  // returns only on failure: carry on as we are
}
#endif
import LQCLI

LQLoRA.main()
