// depass::reuse_freed_memory: glibc takes both settings (a threshold above glibc's limits
// would be refused and the CLI would silently run as before); elsewhere, and under a
// sanitizer's malloc, it reports that nothing changed.
#include <depass/Allocator.hpp>

#include <catch2/catch.hpp>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define DEPASS_TEST_OWN_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || __has_feature(thread_sanitizer)
#define DEPASS_TEST_OWN_MALLOC 1
#endif
#endif

TEST_CASE("reuse_freed_memory is taken by glibc's allocator", "[model]") {
  const bool taken = depass::reuse_freed_memory();
#if defined(__GLIBC__) && !defined(DEPASS_TEST_OWN_MALLOC)
  CHECK(taken);
#else
  CHECK_FALSE(taken);
#endif
  // Allocation still works across the new mmap threshold (below and above 32 MiB).
  for (const std::size_t bytes : {std::size_t(1) << 20, std::size_t(40) << 20}) {
    std::vector<char> block(bytes, 1);
    CHECK(block.back() == 1);
  }
}
