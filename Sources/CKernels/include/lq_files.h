#ifndef LQ_FILES_H
#define LQ_FILES_H

/// Swaps two existing paths in one step (Linux renameat2 with RENAME_EXCHANGE), so that each path
/// holds either its old or its new entry at every instant. Returns 0, or -1 with errno set
/// (ENOSYS or EINVAL where the kernel or file system cannot exchange).
int lq_exchange_paths(const char *a, const char *b);

/// Whether process `pid` exists (kill(pid, 0) succeeds or fails only with EPERM).
int lq_process_alive(int pid);

/// Returns the allocator's free memory to the system (glibc's malloc_trim(0)); nothing elsewhere.
void lq_release_free_memory(void);

#endif
