# examples/bindings/compare_output.cmake - run with cmake -P:
#   -DREF=<the C example> -DMANIFEST=<mlp.json> -DCMD=<program|arg|...>
# Runs both on the manifest; fails unless their standard outputs are equal.
cmake_minimum_required(VERSION 3.25)
string(REPLACE "|" ";" CMD "${CMD}")
execute_process(COMMAND "${REF}" "${MANIFEST}" RESULT_VARIABLE ref_rc
                OUTPUT_VARIABLE ref_out ERROR_VARIABLE ref_err)
if(NOT ref_rc EQUAL 0)
  message(FATAL_ERROR "the C example failed (${ref_rc}):\n${ref_err}")
endif()
execute_process(COMMAND ${CMD} "${MANIFEST}" RESULT_VARIABLE rc
                OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${CMD} failed (${rc}):\n${err}\n--- its output:\n${out}")
endif()
if(NOT out STREQUAL ref_out)
  message(FATAL_ERROR "output differs from the C example's\n--- C:\n${ref_out}\n--- ${CMD}:\n${out}")
endif()
string(REGEX MATCHALL "\n" lines "${out}")
list(LENGTH lines n)
message(STATUS "identical to the C example (${n} lines)")
