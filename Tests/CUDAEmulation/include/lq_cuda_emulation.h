// The GPU library's entry points (lq_cuda.h) computed on the host: "device" memory is host memory
// and every operation is its CPU reference. Tests hand this table to CUDABackend to run the
// device-resident forward pass, and everything that drives it, on a machine without a GPU.
#ifndef LQ_CUDA_EMULATION_H
#define LQ_CUDA_EMULATION_H

#include "lq_cuda.h"

/// The emulated API (device name "host emulation"; two devices, device 0 until init chooses).
const lq_cuda_api *lq_cuda_emulation(void);
/// On the calling thread, the call after `calls` more successful ones fails (and every call after
/// it), as a device out of memory would; -1 stops that.
void lq_cuda_emulation_fail_after(long calls);
/// On the calling thread, only the call after `calls` more successful ones fails (a single
/// allocation that does not fit, say), and the ones after it succeed; -1 stops that.
void lq_cuda_emulation_fail_once(long calls);
/// On the calling thread, nonzero: the emulated library stops clearing the error a handled failure
/// leaves (as liblqlora_cuda.so did before it cleared them), so the next launch reports it as its
/// own; tests use it to show that their sticky-error checks can fail. 0 restores the library's way.
void lq_cuda_emulation_keep_errors(int keep);
/// Calls made so far on the calling thread (all entry points but last_error).
long lq_cuda_emulation_calls(void);

#endif
