// ComponentTensor: layout, sums (whole, and skipping rows known to be zero), residuals and
// bad arguments. Expected values are written out by hand.

#include <catch2/catch.hpp>
#include <depass/ComponentTensor.hpp>

#include "support/TestSupport.hpp"

using namespace depass;

TEMPLATE_TEST_CASE("ComponentTensor sums its components, optionally from each one's first position",
                   "[engine]", DEPASS_TEST_SCALARS) {
  // 3 components over 4 positions x 2 features; component m holds (m+1) * (10 p + j + 1).
  ComponentTensor<TestType> C(3, 4, 2);
  for (Eigen::Index m = 0; m < 3; ++m)
    for (Eigen::Index p = 0; p < 4; ++p)
      for (Eigen::Index j = 0; j < 2; ++j) C.component(m)(p, j) = TestType((m + 1) * (10 * p + j + 1));
  // Row-major stack: component 1, position 2 is stacked row 6.
  CHECK(C.stacked()(6, 1) == TestType(2 * 22));
  CHECK(C.stacked().row(6).data() + 1 == &C.stacked()(6, 1));

  Matrix<TestType> whole = C.sum();
  REQUIRE(whole.rows() == 4);
  REQUIRE(whole.cols() == 2);
  for (Eigen::Index p = 0; p < 4; ++p)
    for (Eigen::Index j = 0; j < 2; ++j) CHECK(whole(p, j) == TestType(6 * (10 * p + j + 1)));

  // With first = {0, 2, 4}: component 1 is read from position 2 on, component 2 not at all.
  Matrix<TestType> live = C.sum({0, 2, 4});
  for (Eigen::Index p = 0; p < 4; ++p)
    for (Eigen::Index j = 0; j < 2; ++j) {
      const TestType expected = TestType((1 + (p >= 2 ? 2 : 0)) * (10 * p + j + 1));
      CHECK(live(p, j) == expected);
    }

  Matrix<TestType> state = whole;
  state(3, 0) += TestType(0.5);
  CHECK(C.residual_max_abs(state) == TestType(0.5));

  REQUIRE_THROWS_AS(C.sum({0, 1}), std::invalid_argument);
  REQUIRE_THROWS_WITH(C.sum({0, 1}), Catch::Matchers::Contains("first has 2 entries"));
  REQUIRE_THROWS_AS(C.component(3), std::invalid_argument);
}

TEST_CASE("ComponentTensor sums a large tensor the same with threads", "[engine]") {
  // Large enough for the threaded path (more than 2^20 scalars).
  ComponentTensor<double> C(40, 200, 160);
  C.stacked().setRandom();
  Matrix<double> expected = Matrix<double>::Zero(200, 160);
  for (Eigen::Index m = 0; m < 40; ++m) expected += C.component(m);
  Eigen::setNbThreads(2);
  const Matrix<double> threaded = C.sum();
  Eigen::setNbThreads(0);
  CHECK((threaded - expected).cwiseAbs().maxCoeff() <= 1e-12);
}
