# Helpers shared by tests/, examples/ and benchmarks/ (only used when depass is built
# as the top-level project).
include_guard(GLOBAL)

# depass_program_defaults(<target>)
#   Link depass, optimise as users are told to (depass_optimize: -march=native unless
#   DEPASS_NATIVE is off, OpenMP if found) and enable the usual warnings.
function(depass_program_defaults target)
  target_link_libraries(${target} PRIVATE depass::depass)
  if(DEPASS_UNITY_BUILD)
    # Batch size 0: all sources of the target in one unit (see DEPASS_UNITY_BUILD).
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
  endif()
  if(DEPASS_NATIVE)
    depass_optimize(${target})
  else()
    depass_optimize(${target} NO_NATIVE)
  endif()
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive- /bigobj)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra)
    # GCC 12 reports Eigen's AVX-512 intrinsics (`__m512 __Y = __Y;`) as maybe-uninitialized,
    # and, on AVX-512 machines, as uninitialized (GCC bug 105593, fixed in GCC 13): pages of
    # warnings from GCC's own headers in every native build there.
    if(DEPASS_NATIVE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
      if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
        target_compile_options(${target} PRIVATE -Wno-uninitialized)
      endif()
    endif()
  endif()
endfunction()
