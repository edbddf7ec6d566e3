// Downstream smoke test: the public headers compile and work through depass::depass.
#include <depass/Config.hpp>
#include <depass/Version.hpp>
#include <depass/Weights.hpp>

#include <cstdio>
#include <exception>

int main() {
#if defined(__x86_64__) && !defined(__SSE3__)
  // Every x86-64 CPU -march=native can target has SSE3; baseline x86-64 does not.
  std::fprintf(stderr, "depass_optimize() did not compile for the native CPU (no __SSE3__)\n");
  return 1;
#endif
#if defined(DEPASS_CONSUMER_EXPECT_OPENMP) && !defined(_OPENMP)
  std::fprintf(stderr, "depass_optimize() did not enable OpenMP\n");
  return 1;
#endif
  depass::Config cfg;
  cfg.dim = 64;
  cfg.n_layers = 5;
  cfg.n_heads = 8;
  cfg.n_kv_heads = 4;
  cfg.head_dim = 8;
  cfg.hidden_dim = 172;
  cfg.vocab_size = 512;
  cfg.max_seq_len = 512;
  try {
    cfg.validate();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "valid config rejected: %s\n", e.what());
    return 1;
  }

  depass::Config bad = cfg;
  bad.n_kv_heads = 3;  // does not divide n_heads
  try {
    bad.validate();
    std::fprintf(stderr, "invalid config accepted\n");
    return 1;
  } catch (const std::exception&) {
  }

  depass::RowMatrix<float> m(2, 3);
  m.setZero();
  std::printf("depass %s consumer OK (heads_per_kv=%d, matrix %ldx%ld)\n",
              depass::version_string(), cfg.heads_per_kv(), static_cast<long>(m.rows()),
              static_cast<long>(m.cols()));
  return 0;
}
