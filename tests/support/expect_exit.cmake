# Runs one test case of a test executable with a given environment and checks its exit
# code and that its output names a given text. Used by the CTest tests that prove what a
# missing model does (tests/CMakeLists.txt):
#   cmake -DEXE=path -DTEST_NAME=name -DMODEL_DIR=dir -DREQUIRE_MODELS=0|1
#         -DEXPECT_CODE=n -DEXPECT_TEXT=text -P expect_exit.cmake
foreach(_var EXE TEST_NAME MODEL_DIR REQUIRE_MODELS EXPECT_CODE EXPECT_TEXT)
  if(NOT DEFINED ${_var})
    message(FATAL_ERROR "expect_exit.cmake: -D${_var}=... is required")
  endif()
endforeach()
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env "DEPASS_MODEL_DIR=${MODEL_DIR}" "DEPASS_REQUIRE_MODELS=${REQUIRE_MODELS}"
          "${EXE}" "${TEST_NAME}"
  RESULT_VARIABLE _code OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
set(_all "${_out}\n${_err}")
if(NOT "${_code}" STREQUAL "${EXPECT_CODE}")
  message(FATAL_ERROR "expected exit code ${EXPECT_CODE}, got '${_code}' from ${EXE} \"${TEST_NAME}\" "
                      "(DEPASS_MODEL_DIR=${MODEL_DIR} DEPASS_REQUIRE_MODELS=${REQUIRE_MODELS}); output:\n${_all}")
endif()
# Catch wraps its messages at 80 columns, so a long path can be split over lines: compare
# with all whitespace removed.
string(REGEX REPLACE "[ \t\r\n]" "" _all_flat "${_all}")
string(REGEX REPLACE "[ \t\r\n]" "" _text_flat "${EXPECT_TEXT}")
string(FIND "${_all_flat}" "${_text_flat}" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "exit code ${_code} as expected, but the output does not name '${EXPECT_TEXT}':\n${_all}")
endif()
message(STATUS "exit code ${_code} and '${EXPECT_TEXT}' in the output, as expected")
