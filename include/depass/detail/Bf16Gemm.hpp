#pragma once
// The bf16 products of GemmPrecision::Bf16 (GemmPrecision.hpp) through oneDNN's matmul.
// dst = src W^T with src and W rounded to bfloat16 (nearest even) and float accumulation.
// oneDNN picks the kernel for the CPU (AMX, AVX-512 BF16, else a slower one); the CTest
// "bf16 fallback" forces a lower instruction set with DNNL_MAX_CPU_ISA.
// Layouts are handed to oneDNN as strides, never copied into another order: a column-major
// destination is computed as its transpose, dst^T = W src^T (a transposed destination
// would send oneDNN to its reference kernel, ~1000x slower).

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../GemmPrecision.hpp"
#include "FloatGemm.hpp"

#ifdef DEPASS_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace depass {
namespace detail {

/// float -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN.
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return static_cast<std::uint16_t>(nan ? ((u >> 16) | 0x40u) : rounded);
}

inline float from_bf16(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// The strides (row, column) of a tightly packed rows x cols matrix in the given order.
inline std::pair<long, long> packed_strides(bool row_major, long rows, long cols) {
  return row_major ? std::pair<long, long>{cols, 1} : std::pair<long, long>{1, rows};
}

/// A float matrix (any storage order, unit inner stride) as bf16 in the same order, tightly
/// packed. Returns the strides (row, column) of the packed copy.
template <typename Src>
std::pair<long, long> pack_bf16(const Src& src, std::vector<std::uint16_t>& out) {
  if (src.innerStride() != 1) throw std::logic_error("pack_bf16: the source needs a unit inner stride");
  const Eigen::Index outer = Src::IsRowMajor ? src.rows() : src.cols(), inner = Src::IsRowMajor ? src.cols() : src.rows();
  out.resize(static_cast<std::size_t>(outer * inner));
  const float* from = src.data();
  for (Eigen::Index o = 0; o < outer; ++o) {
    const float* row = from + o * src.outerStride();
    std::uint16_t* to = out.data() + o * inner;
    for (Eigen::Index i = 0; i < inner; ++i) to[i] = to_bf16(row[i]);
  }
  return packed_strides(Src::IsRowMajor, src.rows(), src.cols());
}

#ifdef DEPASS_WITH_ONEDNN

/// One pass's bf16 products: the weights converted once (cached by address; the model
/// outlives the pass) and oneDNN's engine. Safe to call from several threads at once: each
/// call packs into its own buffer and runs on its own stream; the caches are locked.
/// Where oneDNN has no bf16 matmul for the CPU (before AVX-512, in oneDNN 2.x), or only its
/// reference loops, the products fall back to Eigen on the bf16-rounded values, which gives the same numbers up to the
/// order of the float sums (a bf16 x bf16 product is exact in float), only slower.
class Bf16Gemm {
 public:
  using FloatMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;

  Bf16Gemm() : engine_(dnnl::engine::kind::cpu, 0) {}

  /// dst = src w^T: src R x K, w N x K (a layer's weight: a float matrix that lives as long
  /// as this object, either storage order), dst R x N float with a unit inner stride (row-
  /// or column-major).
  template <typename Src, typename W, typename Dst>
  void multiply_transposed(const Src& src, const W& w, Dst& dst) {
    static_assert(std::is_base_of<Eigen::PlainObjectBase<W>, W>::value && std::is_same<typename W::Scalar, float>::value,
                  "Bf16Gemm: the weights must be a float matrix (their address keys the bf16 copy)");
    if (dst.innerStride() != 1) throw std::logic_error("Bf16Gemm: the destination needs a unit inner stride");
    if (src.rows() == 0 || w.rows() == 0) return;
    if (src.cols() == 0) {
      dst.setZero();
      return;
    }
    thread_local std::vector<std::uint16_t> packed;  // reused: no fresh pages per product
    const std::pair<long, long> strides = pack_bf16(src, packed);
    if (!fallback_.load() && run_onednn(packed.data(), strides, src.rows(), w, dst)) return;
    run_fallback(packed.data(), strides, src.rows(), w, dst);
  }

  /// What computes the products: oneDNN's kernel name (e.g. "brg:avx512_core_bf16",
  /// "brg:avx512_core_amx"), or the fallback; empty before the first product.
  std::string kernel() const {
    const std::lock_guard<std::mutex> lock(mutex_);
    return kernel_;
  }

 private:
  template <typename W, typename Dst>
  bool run_onednn(const std::uint16_t* packed, std::pair<long, long> s, long R, const W& w, Dst& dst) {
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const long K = w.cols(), N = w.rows(), ld = dst.outerStride();
    auto* a_data = const_cast<std::uint16_t*>(packed);
    std::pair<long, long> ws;  // w's strides (row, column)
    auto* w_data = const_cast<std::uint16_t*>(weights(w, ws));
    dnnl::memory::desc a, b, c;
    if (Dst::IsRowMajor) {  // dst (R x N) = src (R x K) . w^T (K x N)
      a = dnnl::memory::desc(dims{R, K}, dt::bf16, dims{s.first, s.second});
      b = dnnl::memory::desc(dims{K, N}, dt::bf16, dims{ws.second, ws.first});
      c = dnnl::memory::desc(dims{R, N}, dt::f32, dims{ld, 1});
    } else {  // dst^T (N x R, row-major) = w (N x K) . src^T (K x R)
      a = dnnl::memory::desc(dims{N, K}, dt::bf16, dims{ws.first, ws.second});
      b = dnnl::memory::desc(dims{K, R}, dt::bf16, dims{s.second, s.first});
      c = dnnl::memory::desc(dims{N, R}, dt::f32, dims{ld, 1});
      std::swap(a_data, w_data);
    }
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), engine_);
      const std::string kernel = pd.impl_info_str();
      if (kernel.rfind("ref", 0) == 0) {  // oneDNN's reference loops: ours are ~1000x faster
        fallback_ = true;
        return false;
      }
      note_kernel(kernel);
      const dnnl::matmul product(pd);  // oneDNN's primitive cache makes repeats cheap
      dnnl::memory am(a, engine_, a_data), bm(b, engine_, w_data), cm(c, engine_, dst.data());
      dnnl::stream stream(engine_);
      product.execute(stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      stream.wait();
      return true;
    } catch (const dnnl::error&) {  // no bf16 matmul on this CPU
      fallback_ = true;
      return false;
    }
  }

  template <typename W, typename Dst>
  void run_fallback(const std::uint16_t* packed, std::pair<long, long> s, long R, const W& w, Dst& dst) {
    note_kernel("fallback: Eigen float products of bf16-rounded values");
    const long K = w.cols();
    FloatMatrix a(R, K);
    for (long r = 0; r < R; ++r)
      for (long k = 0; k < K; ++k) a(r, k) = from_bf16(packed[r * s.first + k * s.second]);
    dst.noalias() = a * rounded(w).transpose();
  }

  void note_kernel(const std::string& name) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (kernel_.empty()) kernel_ = name;
    else if (kernel_.find(name) == std::string::npos) kernel_ += ", " + name;
  }

  template <typename W>
  const std::uint16_t* weights(const W& w, std::pair<long, long>& strides) {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::vector<std::uint16_t>& copy = bf16_weights_[w.data()];
    if (copy.size() != static_cast<std::size_t>(w.size())) pack_bf16(w, copy);
    strides = packed_strides(W::IsRowMajor, w.rows(), w.cols());
    return copy.data();
  }

  template <typename W>
  const FloatMatrix& rounded(const W& w) {
    const std::lock_guard<std::mutex> lock(mutex_);
    FloatMatrix& copy = rounded_weights_[w.data()];
    if (copy.size() != w.size()) copy = w.unaryExpr([](float x) { return from_bf16(to_bf16(x)); });
    return copy;
  }

  dnnl::engine engine_;
  mutable std::mutex mutex_;
  std::atomic<bool> fallback_{false};
  std::string kernel_;
  std::map<const float*, std::vector<std::uint16_t>> bf16_weights_;
  std::map<const float*, FloatMatrix> rounded_weights_;
};

#else

/// Without oneDNN the mode cannot run: constructing the products says why.
class Bf16Gemm {
 public:
  Bf16Gemm() { throw std::invalid_argument(bf16_unavailable_reason()); }
  template <typename Src, typename W, typename Dst>
  void multiply_transposed(const Src&, const W&, Dst&) {}
  std::string kernel() const { return {}; }
};

#endif

/// The products of a layer's rule: dst = src w^T in Scalar, or through bf16 when the pass
/// runs GemmPrecision::Bf16 (float only). Float products go to oneDNN where FloatGemm says
/// so (FloatGemm.hpp), the rest to Eigen.
template <typename Scalar>
struct Product {
  Bf16Gemm* bf16 = nullptr;

  template <typename Src, typename W, typename Dst>
  void operator()(const Src& src, const W& w, Dst&& dst) const {
    if constexpr (std::is_same<Scalar, float>::value) {
      if (bf16) {
        bf16->multiply_transposed(src, w, dst);
        return;
      }
      if (onednn_multiply_transposed(src, w, dst)) return;
    }
    dst.noalias() = src * w.transpose();
  }
};

}  // namespace detail
}  // namespace depass
