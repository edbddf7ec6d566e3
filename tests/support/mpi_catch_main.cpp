// Catch2's main for the MPI tests (tests/mpi), run by ctest under mpirun: every rank runs
// every test case in the same order (their collectives meet), and the job fails if any
// rank had a failure. Ranks other than 0 report failures only.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include <vector>

#include "TestSkip.hpp"

int main(int argc, char* argv[]) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Catch::Session session;
  int code = session.applyCommandLine(argc, argv);
  if (code == 0) {
    if (rank != 0) session.configData().showSuccessfulTests = false;
    code = session.run();
  }
  if (code == 0 && depass::test::skipped_test_cases() > 0) code = depass::test::kSkipExitCode;
  int worst = 0;
  MPI_Allreduce(&code, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
