#pragma once
// Float products through oneDNN's matmul (FloatGemm::OneDnn, GemmPrecision.hpp): on
// AVX-512 CPUs its kernels run ~1.5x faster than Eigen's GEMM on the layers' shapes
// (docs/performance.md, "oneDNN for the float products"). Every operand is handed over as
// a row-major matrix with strides, never copied; a primitive is built once per shape and
// thread and reused. Where oneDNN offers only its reference loops or fails, the caller
// multiplies with Eigen instead (onednn_product returns false).

#include <Eigen/Core>
#include <array>
#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "../GemmPrecision.hpp"

#ifdef DEPASS_WITH_ONEDNN
#include <dnnl.hpp>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace depass {
namespace detail {

/// Strides (row, column) of a matrix as oneDNN reads it.
struct Strides {
  long row, col;
};

/// Below this many multiply-adds a oneDNN call (~1.5 us) costs more than Eigen's product;
/// from about 2^16 on oneDNN is faster (docs/performance.md, "oneDNN for the float products").
constexpr double kOneDnnMinWork = 1 << 15;

#ifdef DEPASS_WITH_ONEDNN

/// oneDNN's engine (one per process) and whether it has failed (then every product is Eigen's).
inline dnnl::engine& onednn_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}
inline std::atomic<bool>& onednn_failed() {
  static std::atomic<bool> failed{false};
  return failed;
}

/// Products oneDNN has computed in this process (tests and benchmarks check the path ran).
inline std::atomic<long>& onednn_products_run() {
  static std::atomic<long> count{0};
  return count;
}

/// The threads a oneDNN primitive built here would use: OpenMP's setting (ThreadLimit,
/// set_threads), or 1 inside a parallel region. Part of the cache key, so that a primitive
/// built for two threads never runs where the setting says one.
inline long onednn_team() {
#ifdef _OPENMP
  return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
  return 1;
#endif
}

/// One shape's product, built once per thread: the primitive and its memory objects, whose
/// data pointers are set at each call. Empty `product` = oneDNN has only reference loops.
struct OneDnnProduct {
  bool usable = false;
  dnnl::matmul product;
  dnnl::memory a, b, c, scratch;
};

/// The calling thread's products by shape (rows, cols, inner, strides, ldc, add, team), stream
/// and scratchpad. Primitives and streams are used by one thread only.
class OneDnnProducts {
 public:
  using Key = std::array<long, 10>;

  OneDnnProduct& get(const Key& key) {
    if (cache_.size() > 256) cache_.clear();  // shapes vary little; bound it anyway
    std::unique_ptr<OneDnnProduct>& slot = cache_[key];
    if (!slot) slot = build(key);
    return *slot;
  }
  dnnl::stream& stream() { return stream_; }
  void* scratch(std::size_t bytes) {
    if (scratch_.size() < bytes) scratch_.resize(bytes);
    return scratch_.data();
  }

 private:
  std::unique_ptr<OneDnnProduct> build(const Key& k) {
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    auto made = std::make_unique<OneDnnProduct>();
    const dnnl::memory::desc a(dims{k[0], k[2]}, dt::f32, dims{k[3], k[4]});
    const dnnl::memory::desc b(dims{k[2], k[1]}, dt::f32, dims{k[5], k[6]});
    const dnnl::memory::desc c(dims{k[0], k[1]}, dt::f32, dims{k[7], 1});
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // ours, per thread
    if (k[8]) {
      dnnl::post_ops sum;
      sum.append_sum(1.0f);  // c += a b
      attr.set_post_ops(sum);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, onednn_engine());
    if (std::string(pd.impl_info_str()).rfind("ref", 0) == 0) return made;  // Eigen is ~1000x faster
    made->product = dnnl::matmul(pd);
    made->a = dnnl::memory(a, onednn_engine(), nullptr);
    made->b = dnnl::memory(b, onednn_engine(), nullptr);
    made->c = dnnl::memory(c, onednn_engine(), nullptr);
    made->scratch = dnnl::memory(pd.scratchpad_desc(), onednn_engine(), nullptr);
    made->usable = true;
    return made;
  }

  std::map<Key, std::unique_ptr<OneDnnProduct>> cache_;
  dnnl::stream stream_{onednn_engine()};
  std::vector<char> scratch_;
};

/// c = a b (+ c when `add`): c rows x cols, row-major with leading dimension ldc; a rows x
/// inner and b inner x cols with the given strides. False, with nothing written, when
/// oneDNN has no kernel for it (the caller then uses Eigen).
inline bool onednn_product(long rows, long cols, long inner, const float* a, Strides as, const float* b, Strides bs,
                           float* c, long ldc, bool add) {
  if (onednn_failed().load()) return false;
  thread_local OneDnnProducts products;
  OneDnnProduct* p = nullptr;
  try {
    p = &products.get({rows, cols, inner, as.row, as.col, bs.row, bs.col, ldc, add ? 1 : 0, onednn_team()});
  } catch (const dnnl::error&) {  // e.g. no f32 matmul for this CPU: Eigen from now on
    onednn_failed() = true;
    return false;
  }
  if (!p->usable) return false;
  try {
    p->a.set_data_handle(const_cast<float*>(a));
    p->b.set_data_handle(const_cast<float*>(b));
    p->c.set_data_handle(c);
    p->scratch.set_data_handle(products.scratch(p->scratch.get_desc().get_size()));
    p->product.execute(products.stream(), {{DNNL_ARG_SRC, p->a},
                                           {DNNL_ARG_WEIGHTS, p->b},
                                           {DNNL_ARG_DST, p->c},
                                           {DNNL_ARG_SCRATCHPAD, p->scratch}});
    products.stream().wait();
    onednn_products_run().fetch_add(1, std::memory_order_relaxed);
  } catch (const dnnl::error& e) {  // c may be half written: no silent fallback
    throw std::runtime_error(std::string("oneDNN float product failed: ") + e.what());
  }
  return true;
}

#else

inline std::atomic<long>& onednn_products_run() {
  static std::atomic<long> count{0};
  return count;
}

inline bool onednn_product(long, long, long, const float*, Strides, const float*, Strides, float*, long, bool) {
  return false;
}

#endif

/// Whether a float product of this size goes to oneDNN (FloatGemm::OneDnn chosen, enough work).
inline bool use_onednn(long rows, long cols, long inner) {
  return rows > 0 && cols > 0 && inner > 0 && float_gemm() == FloatGemm::OneDnn &&
         static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(inner) >= kOneDnnMinWork;
}

/// dst = src w^T (a layer weight w, [out, in]; each operand in either storage order with a
/// unit inner stride) through oneDNN when FloatGemm::OneDnn is chosen and the product is
/// large enough; false, nothing written, otherwise. A column-major dst is computed as
/// dst^T = w src^T.
template <typename Src, typename W, typename Dst>
bool onednn_multiply_transposed(const Src& src, const W& w, Dst& dst) {
  using DstType = std::decay_t<Dst>;
  const long rows = src.rows(), inner = src.cols(), cols = w.rows();
  if (!use_onednn(rows, cols, inner) || src.innerStride() != 1 || w.innerStride() != 1 || dst.innerStride() != 1)
    return false;
  const Strides s = Src::IsRowMajor ? Strides{src.outerStride(), 1} : Strides{1, src.outerStride()};  // src
  const Strides wt = W::IsRowMajor ? Strides{1, w.outerStride()} : Strides{w.outerStride(), 1};      // w^T
  if (DstType::IsRowMajor && cols > 1)
    return onednn_product(rows, cols, inner, src.data(), s, w.data(), wt, dst.data(), dst.outerStride(), false);
  if (!DstType::IsRowMajor && rows > 1)
    return onednn_product(cols, rows, inner, w.data(), {wt.col, wt.row}, src.data(), {s.col, s.row}, dst.data(),
                          dst.outerStride(), false);
  return false;  // a vector: its outer stride is not a leading dimension
}

template <typename Dst, typename Product>
void assign_product(Dst& dst, const Product& p, bool add) {
  if (add) dst.noalias() += p;
  else dst.noalias() = p;
}

/// dst = op(a) op(b), or dst += when `add`, op = transpose where asked; column-major
/// operands (matrices or blocks with a unit inner stride). Float products large enough go
/// to oneDNN as dst^T = op(b)^T op(a)^T, each a row-major view of the same storage
/// (X as row-major: strides (1, ld); X^T: (ld, 1)); the rest, and double, are Eigen's.
template <typename Dst, typename A, typename B>
void product(Dst&& dst, const A& a, bool ta, const B& b, bool tb, bool add) {
  using Scalar = typename std::decay_t<Dst>::Scalar;
  static_assert(!std::decay_t<Dst>::IsRowMajor && !A::IsRowMajor && !B::IsRowMajor, "product: column-major operands");
  if constexpr (std::is_same<Scalar, float>::value) {
    const long rows = ta ? a.cols() : a.rows(), inner = ta ? a.rows() : a.cols(), cols = tb ? b.rows() : b.cols();
    const long lda = a.outerStride(), ldb = b.outerStride();
    if (use_onednn(cols, rows, inner) && a.innerStride() == 1 && b.innerStride() == 1 && dst.innerStride() == 1 &&
        onednn_product(cols, rows, inner, b.data(), tb ? Strides{1, ldb} : Strides{ldb, 1}, a.data(),
                       ta ? Strides{1, lda} : Strides{lda, 1}, dst.data(), dst.outerStride(), add))
      return;
  }
  if (ta && tb) assign_product(dst, a.transpose() * b.transpose(), add);
  else if (ta) assign_product(dst, a.transpose() * b, add);
  else if (tb) assign_product(dst, a * b.transpose(), add);
  else assign_product(dst, a * b, add);
}

}  // namespace detail
}  // namespace depass
