# Driver for the packaging tests (see tests/cmake/CMakeLists.txt). Run with cmake -P.
#
#   -DACTION=install  -DBUILD_DIR=<depass build> -DPREFIX=<dir>
#       Fresh `cmake --install` of the depass build tree into PREFIX.
#   -DACTION=consume  -DMODE=find_package|subdirectory|fetchcontent -DWORK_DIR=<dir>
#                     -DCONSUMER_DIR=<tests/cmake/consumer> -DDEPASS_SOURCE_DIR=<src>
#                     [-DPREFIX=<install prefix>] [-DGENERATOR=..] [-DCXX_COMPILER=..]
#                     [-DCONFIG=..] [-DEIGEN3_DIR=..] [-DNLOHMANN_JSON_DIR=..]
#       Configure, build and run the consumer project in WORK_DIR.

cmake_minimum_required(VERSION 3.21)

function(step what)
  string(JOIN " " _cmdline ${ARGN})
  message(STATUS "[${MODE}${ACTION_LABEL}] ${what}: ${_cmdline}")
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message("${_out}")
    message(FATAL_ERROR "FAILED (${_rc}) while trying to ${what}:\n  ${_cmdline}")
  endif()
  set(STEP_OUTPUT "${_out}" PARENT_SCOPE)
endfunction()

foreach(_required ACTION)
  if(NOT DEFINED ${_required})
    message(FATAL_ERROR "run_consumer.cmake: -D${_required}=... is required")
  endif()
endforeach()

if(NOT CONFIG)
  set(CONFIG Release)
endif()

if(ACTION STREQUAL "install")
  set(ACTION_LABEL "install")
  if(NOT BUILD_DIR OR NOT PREFIX)
    message(FATAL_ERROR "run_consumer.cmake: install needs -DBUILD_DIR and -DPREFIX")
  endif()
  file(REMOVE_RECURSE "${PREFIX}")
  step("install depass into ${PREFIX}"
    "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" --config "${CONFIG}")
  file(GLOB_RECURSE _configs "${PREFIX}/*/depassConfig.cmake")
  if(NOT _configs)
    message(FATAL_ERROR "install produced no depassConfig.cmake under ${PREFIX}")
  endif()
  if(NOT EXISTS "${PREFIX}/include/depass/Config.hpp")
    message(FATAL_ERROR "install produced no ${PREFIX}/include/depass/Config.hpp")
  endif()
  message(STATUS "installed: ${_configs}")
  return()
endif()

if(NOT ACTION STREQUAL "consume")
  message(FATAL_ERROR "run_consumer.cmake: unknown ACTION '${ACTION}'")
endif()
foreach(_required MODE WORK_DIR CONSUMER_DIR DEPASS_SOURCE_DIR)
  if(NOT DEFINED ${_required})
    message(FATAL_ERROR "run_consumer.cmake: -D${_required}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(_configure_args
  -S "${CONSUMER_DIR}" -B "${WORK_DIR}/build"
  "-DDEPASS_CONSUME=${MODE}"
  "-DCMAKE_BUILD_TYPE=${CONFIG}")
if(GENERATOR)
  list(APPEND _configure_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND _configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(EIGEN3_DIR)
  list(APPEND _configure_args "-DEigen3_DIR=${EIGEN3_DIR}")
endif()
if(NLOHMANN_JSON_DIR)
  list(APPEND _configure_args "-Dnlohmann_json_DIR=${NLOHMANN_JSON_DIR}")
endif()

if(MODE STREQUAL "find_package")
  if(NOT PREFIX OR NOT EXISTS "${PREFIX}")
    message(FATAL_ERROR "find_package mode needs the install prefix from cmake.install: ${PREFIX}")
  endif()
  list(APPEND _configure_args "-DCMAKE_PREFIX_PATH=${PREFIX}")
elseif(MODE STREQUAL "subdirectory")
  list(APPEND _configure_args "-DDEPASS_SOURCE_DIR=${DEPASS_SOURCE_DIR}")
elseif(MODE STREQUAL "fetchcontent")
  # Pack what a release tarball would hold (no tests, no build trees, no models) and let
  # FetchContent download and unpack it from a file:// URL: exercises the real URL path
  # without network access.
  set(_tarball "${WORK_DIR}/depass-src.tar.gz")
  set(_members CMakeLists.txt cmake include)
  if(EXISTS "${DEPASS_SOURCE_DIR}/LICENSE")
    list(APPEND _members LICENSE)
  endif()
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -E tar czf "${_tarball}" -- ${_members}
    WORKING_DIRECTORY "${DEPASS_SOURCE_DIR}"
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "could not pack ${DEPASS_SOURCE_DIR} into ${_tarball}: ${_err}")
  endif()
  file(SHA256 "${_tarball}" _hash)
  list(APPEND _configure_args "-DDEPASS_URL=file://${_tarball}" "-DDEPASS_URL_HASH=SHA256=${_hash}")
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown MODE '${MODE}' (find_package|subdirectory|fetchcontent)")
endif()

step("configure the consumer" "${CMAKE_COMMAND}" ${_configure_args})
step("build the consumer" "${CMAKE_COMMAND}" --build "${WORK_DIR}/build" --config "${CONFIG}")

# Locate the executable (single- or multi-config layouts).
set(_exe_name depass_consumer)
foreach(_candidate
    "${WORK_DIR}/build/${_exe_name}" "${WORK_DIR}/build/${CONFIG}/${_exe_name}"
    "${WORK_DIR}/build/${_exe_name}.exe" "${WORK_DIR}/build/${CONFIG}/${_exe_name}.exe")
  if(EXISTS "${_candidate}")
    set(_exe "${_candidate}")
    break()
  endif()
endforeach()
if(NOT _exe)
  message(FATAL_ERROR "consumer built but ${_exe_name} not found under ${WORK_DIR}/build")
endif()
step("run the consumer" "${_exe}")
message(STATUS "${STEP_OUTPUT}")
message(STATUS "[${MODE}] OK")
