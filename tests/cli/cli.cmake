# Included from tests/CMakeLists.txt when depass_test_cli exists (see the comment there).
#
# depass_test_cli runs build/bin/depass and build/bin/example_* as child processes: it gets
# their location as compile definitions and a build dependency on them. The examples/
# subdirectory is added after tests/, so targets are referenced by name (resolved at
# generate time).
if(DEPASS_BUILD_EXAMPLES AND EXISTS "${PROJECT_SOURCE_DIR}/examples/depass")
  set(_depass_cli_bin "${CMAKE_BINARY_DIR}/bin")
  target_compile_definitions(depass_test_cli PRIVATE
    DEPASS_CLI_PATH="${_depass_cli_bin}/depass"
    DEPASS_BIN_DIR="${_depass_cli_bin}")
  add_dependencies(depass_test_cli depass_cli)
  if(TARGET depass::mpi)
    # The CLI links MPI (examples/CMakeLists.txt): CliMpi.test.cpp runs it under mpirun.
    target_compile_definitions(depass_test_cli PRIVATE DEPASS_TEST_MPIEXEC="${MPIEXEC_EXECUTABLE}")
  endif()
  if(DEPASS_SANITIZE)
    # The code under test runs in the sanitized `depass` child processes; the test driver
    # (6 min of CPU under ASan, the library in-process for comparisons) need not be.
    depass_unsanitized(depass_test_cli)
  endif()
  file(GLOB _depass_cli_examples CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/examples/*.cpp")
  if(NOT DEPASS_BUILD_EXAMPLE_PROGRAMS)
    set(_depass_cli_examples "")
  endif()
  foreach(_src IN LISTS _depass_cli_examples)
    get_filename_component(_name "${_src}" NAME_WLE)
    add_dependencies(depass_test_cli example_${_name})
  endforeach()

  # The HTML report in headless Chromium: a separate executable so that its tests can
  # require the set-up fixture, which installs Debian's chromium when it is missing (as
  # root). Without a browser the test exits 77 and CTest reports it as skipped.
  add_executable(depass_test_cli_browser "${CMAKE_CURRENT_LIST_DIR}/browser/HtmlReport.browser.cpp")
  target_link_libraries(depass_test_cli_browser PRIVATE depass_catch_main depass_test_support)
  depass_program_defaults(depass_test_cli_browser)
  target_compile_definitions(depass_test_cli_browser PRIVATE
    DEPASS_CLI_PATH="${_depass_cli_bin}/depass"
    DEPASS_BIN_DIR="${_depass_cli_bin}")
  add_dependencies(depass_test_cli_browser depass_cli)
  if(DEPASS_SANITIZE)
    depass_unsanitized(depass_test_cli_browser)
  endif()
  set_target_properties(depass_test_cli_browser PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests")
  catch_discover_tests(depass_test_cli_browser
    TEST_PREFIX "cli:"
    WORKING_DIRECTORY "${CMAKE_BINARY_DIR}"
    PROPERTIES LABELS "cli" FIXTURES_REQUIRED depass_chromium SKIP_RETURN_CODE 77)
  add_test(NAME "cli:setup headless chromium"
    COMMAND bash "${CMAKE_CURRENT_LIST_DIR}/setup_chromium.sh")
  set_tests_properties("cli:setup headless chromium" PROPERTIES
    FIXTURES_SETUP depass_chromium LABELS "cli" TIMEOUT 900)
else()
  message(STATUS "depass: examples are not built; the CLI tests will skip")
endif()
