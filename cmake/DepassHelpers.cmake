# Helpers shared by tests/, examples/ and benchmarks/ (only used when depass is built
# as the top-level project).
include_guard(GLOBAL)

# depass_program_defaults(<target>)
#   Link depass and (if found) OpenMP, and enable the usual warnings.
function(depass_program_defaults target)
  target_link_libraries(${target} PRIVATE depass::depass)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  endif()
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive- /bigobj)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra)
  endif()
endfunction()
