#pragma once
// An opt-in allocator setting for programs that run many passes (depass evaluate, integrated
// gradients, batches). The engine's temporaries are large matrices, above glibc's default
// mmap threshold (128 KiB), so glibc maps each one fresh, faults and zeroes every page on
// first touch, and unmaps it when it is freed: the next pass pays all of that again, as
// system time. reuse_freed_memory() has glibc serve them from the heap and keep freed memory
// for the next pass. Peak memory is the same (the same matrices are live at once); freed
// memory stays with the process until it exits. The library never calls it by itself: it
// changes a process-wide setting. docs/performance.md, "Allocator", has the measurements.

#include <cstdlib>  // first: defines __GLIBC__ (through <features.h>) where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace depass {

/// Largest glibc accepts for M_MMAP_THRESHOLD on 64-bit systems; larger matrices are still mapped.
constexpr int kMmapThresholdBytes = 32 << 20;
/// Freed memory at the top of the heap that glibc keeps instead of returning it.
constexpr int kTrimThresholdBytes = 1 << 30;

/// Applies the setting above. Returns whether the allocator took it: false where the C
/// library is not glibc, or where malloc is replaced (e.g. AddressSanitizer's), which is
/// harmless: the program runs as before.
inline bool reuse_freed_memory() {
#if defined(__GLIBC__)
  const bool mmap_set = mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes) == 1;
  const bool trim_set = mallopt(M_TRIM_THRESHOLD, kTrimThresholdBytes) == 1;
  return mmap_set && trim_set;
#else
  return false;
#endif
}

}  // namespace depass
