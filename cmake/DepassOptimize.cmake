# depass_optimize(<target> [NO_NATIVE] [NO_OPENMP])
#
# What makes a program that uses depass fast, in one line:
#   * -march=native: Eigen then uses the building machine's widest vector units (AVX2+FMA,
#     AVX-512) instead of baseline x86-64's SSE2. Token-level DePass runs ~4x faster with
#     it (docs/performance.md). The binary then needs a CPU like the one it was built on:
#     pass NO_NATIVE when building binaries for other machines (packages).
#   * OpenMP: the engine's threads (and Eigen's threaded products). Without it, one thread.
# Installed with the depass package (find_package(depass) defines it) and available after
# add_subdirectory / FetchContent too.
include_guard(GLOBAL)
include(CheckCXXCompilerFlag)

function(depass_optimize target)
  cmake_parse_arguments(_depass_opt "NO_NATIVE;NO_OPENMP" "" "" ${ARGN})
  if(NOT _depass_opt_NO_NATIVE AND NOT MSVC)
    check_cxx_compiler_flag(-march=native DEPASS_COMPILER_HAS_MARCH_NATIVE)
    if(DEPASS_COMPILER_HAS_MARCH_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    else()
      message(WARNING "depass_optimize(${target}): the compiler does not accept -march=native; "
                      "Eigen will use the default instruction set (slower)")
    endif()
  endif()
  if(NOT _depass_opt_NO_OPENMP)
    find_package(OpenMP COMPONENTS CXX QUIET)
    if(OpenMP_CXX_FOUND)
      target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
    else()
      message(STATUS "depass_optimize(${target}): OpenMP not found, the engine runs on one thread")
    endif()
  endif()
endfunction()
