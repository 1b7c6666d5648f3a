# tests/abi/exports.cmake - run with cmake -P: -DNM= -DLIB= -DPLUGIN_DIR= -DHEADER=
#
# "If it is not in the header it is not API", both ways:
#  - libnnmod's dynamic symbol table defines every function nnmod.h declares
#    with NNM_API, and nothing else (no nnm__ internals, no helpers);
#  - every plugin in PLUGIN_DIR defines exactly one symbol, nnm_plugin_entry.
cmake_minimum_required(VERSION 3.25)

# Symbols the toolchain itself may define in a shared object.
set(toolchain_re "^(_init|_fini|_edata|_end|__bss_start|__.*)$")

function(defined_symbols file out)
  execute_process(COMMAND "${NM}" -D --defined-only --format=posix "${file}"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} failed on ${file}: ${err}")
  endif()
  string(REPLACE "\n" ";" lines "${text}")
  set(syms "")
  foreach(l IN LISTS lines)
    if(l MATCHES "^([^ @]+)(@[^ ]*)? [A-Za-z] ")
      set(sym "${CMAKE_MATCH_1}")
      if(NOT sym MATCHES "${toolchain_re}")
        list(APPEND syms "${sym}")
      endif()
    endif()
  endforeach()
  list(REMOVE_DUPLICATES syms)
  list(SORT syms)
  set(${out} "${syms}" PARENT_SCOPE)
endfunction()

set(errors "")

# -- libnnmod -------------------------------------------------------------------
file(STRINGS "${HEADER}" decls REGEX "^NNM_API ")
set(api "")
foreach(d IN LISTS decls)
  if(d MATCHES "[ *](nnm_[a-z0-9_]+)\\(")
    list(APPEND api "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(LENGTH api n_api)
if(n_api LESS 20)
  message(FATAL_ERROR "parsed only ${n_api} NNM_API declarations from ${HEADER}")
endif()
defined_symbols("${LIB}" exported)
foreach(f IN LISTS api)
  if(NOT f IN_LIST exported)
    string(APPEND errors "  libnnmod does not export ${f} (declared in nnmod.h)\n")
  endif()
endforeach()
foreach(s IN LISTS exported)
  if(NOT s IN_LIST api)
    string(APPEND errors "  libnnmod exports ${s}, which nnmod.h does not declare\n")
  endif()
endforeach()
list(LENGTH exported n_exp)
message(STATUS "libnnmod: ${n_api} API functions declared, ${n_exp} symbols exported")

# -- plugins --------------------------------------------------------------------
file(GLOB plugins "${PLUGIN_DIR}/*.so")
if(NOT plugins)
  string(APPEND errors "  no plugins in ${PLUGIN_DIR}\n")
endif()
foreach(p IN LISTS plugins)
  defined_symbols("${p}" syms)
  get_filename_component(n "${p}" NAME)
  if(NOT syms STREQUAL "nnm_plugin_entry")
    string(APPEND errors "  ${n} exports [${syms}]; a plugin exports nnm_plugin_entry only\n")
  else()
    message(STATUS "${n}: nnm_plugin_entry only")
  endif()
endforeach()

if(errors)
  message(FATAL_ERROR "export check failed:\n${errors}")
endif()
