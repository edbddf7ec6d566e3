// detail::run_products: a step's products in one parallel region, split by output columns.
// Each job's output must be the sum of its terms whichever thread computed which columns,
// including runs that straddle two jobs and widths that are not multiples of 16.

#include <catch2/catch.hpp>
#include <depass/detail/SplitProduct.hpp>

#include <type_traits>

#include "support/TestSupport.hpp"

using namespace depass;

TEMPLATE_TEST_CASE("run_products: each output the sum of its terms on one thread and on two", "[detail]",
                   DEPASS_TEST_SCALARS) {
  using S = TestType;
  const Eigen::Index rows = 300;
  const Matrix<S> a = Matrix<S>::Random(rows, 200), b = Matrix<S>::Random(rows, 90), c = Matrix<S>::Random(rows, 60);
  const RowMatrix<S> w1 = RowMatrix<S>::Random(203, 200);  // stored [out, in]: a w1^T is rows x 203
  const RowMatrix<S> w2 = RowMatrix<S>::Random(90, 77), w3 = RowMatrix<S>::Random(60, 77);  // b w2 + c w3: rows x 77
  const Matrix<S> first = a * w1.transpose(), second = b * w2 + c * w3;
  const double tol = std::is_same<S, float>::value ? 1e-5 : 1e-13;
  for (const int thread_count : {1, 2}) {
    const test::ThreadCount scope(thread_count);
    Matrix<S> out1(3, 3), out2;  // wrongly sized on entry: run_products sizes them
    const std::vector<detail::ProductJob<S>> jobs{{&out1, {{a, w1, true}}}, {&out2, {{b, w2, false}, {c, w3, false}}}};
    // 2 * 300 * (200 * 203 + 90 * 77 + 60 * 77) flops: enough to share (engine/WorkItems.hpp).
    CHECK(detail::product_team(jobs) == thread_count);
    detail::run_products(jobs);
    INFO(thread_count << " threads");
    REQUIRE(out1.rows() == rows);
    REQUIRE(out1.cols() == 203);
    REQUIRE(out2.cols() == 77);
    CHECK((out1 - first).cwiseAbs().maxCoeff() <= tol * first.cwiseAbs().maxCoeff());
    CHECK((out2 - second).cwiseAbs().maxCoeff() <= tol * second.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("run_products keeps small work and narrow outputs on one thread", "[detail]") {
  const test::ThreadCount two(2);
  const Matrix<double> x = Matrix<double>::Random(8, 16);
  const RowMatrix<double> w = RowMatrix<double>::Random(24, 16);
  Matrix<double> out;
  const std::vector<detail::ProductJob<double>> small{{&out, {{x, w, true}}}};
  CHECK(detail::product_team(small) == 1);  // 6144 flops
  detail::run_products(small);
  CHECK((out - x * w.transpose()).cwiseAbs().maxCoeff() <= 1e-14);
  // Much work but 16 output columns: one run of 16 cannot be shared.
  const Matrix<double> tall = Matrix<double>::Random(4000, 400);
  const RowMatrix<double> narrow = RowMatrix<double>::Random(16, 400);
  CHECK(detail::product_team<double>({{&out, {{tall, narrow, true}}}}) == 1);
}
