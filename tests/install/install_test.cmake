# tests/install/install_test.cmake - run with cmake -P (see CMakeLists.txt).
#
# 1. cmake --install NNM_BUILD_DIR into a fresh prefix; check the layout.
# 2. pkg-config: the .pc file resolves from the prefix (Libs, Cflags, plugindir).
# 3. Configure + build examples/third_party_plugin with CMAKE_PREFIX_PATH=prefix.
# 4. Run its host: explicit load of the plugin from the example's build dir.
# 5. Build the plugin a second way, with the compiler and `pkg-config --cflags`
#    only, and run the host on that file.
# 6. cmake --install the example (plugin -> nnmod_PLUGIN_DIR); run the host
#    with --discover.
# 6b. A plugin written for nnmod 0.2 (find_package(nnmod 0.2)) configures,
#    builds and loads beside nnmod's own gelu; find_package(nnmod_plugin 1.N)
#    and pkg-config's nnmod-plugin answer by the plugin ABI.
# 7. README.md's pkg-config command for applications, taken from README.md
#    as written, builds a program that runs with no LD_LIBRARY_PATH.
# Any failure stops with FATAL_ERROR (the test fails).
cmake_minimum_required(VERSION 3.25)

foreach(v NNM_BUILD_DIR NNM_SOURCE_DIR NNM_WORK_DIR NNM_GENERATOR NNM_C_COMPILER NNM_LIBDIR)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "install_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT NNM_CONFIG)
  set(NNM_CONFIG RelWithDebInfo)
endif()
separate_arguments(_cflags UNIX_COMMAND "${NNM_C_FLAGS}")

set(prefix "${NNM_WORK_DIR}/prefix")
set(ex_src "${NNM_SOURCE_DIR}/examples/third_party_plugin")
set(ex_build "${NNM_WORK_DIR}/example-build")
file(REMOVE_RECURSE "${NNM_WORK_DIR}")
file(MAKE_DIRECTORY "${NNM_WORK_DIR}")

# run(<step> COMMAND ...): runs, echoes the output, fails the test on non-zero.
function(run step)
  cmake_parse_arguments(R "" "" "COMMAND" ${ARGN})
  message(STATUS "[${step}] ${R_COMMAND}")
  execute_process(COMMAND ${R_COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${step}] failed (${rc})")
  endif()
  set(RUN_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

# Only the installed library: no build tree on the library path.
set(env "${CMAKE_COMMAND}" -E env --unset=NNM_PLUGIN_PATH
        "LD_LIBRARY_PATH=${prefix}/${NNM_LIBDIR}")

# -- 1. install ---------------------------------------------------------------
run(install COMMAND "${CMAKE_COMMAND}" --install "${NNM_BUILD_DIR}" --prefix "${prefix}"
                    --config "${NNM_CONFIG}")
foreach(f include/nnmod/nnmod.h include/nnmod/plugin.h include/nnmod/version.h
          ${NNM_LIBDIR}/libnnmod.so ${NNM_LIBDIR}/pkgconfig/nnmod.pc
          ${NNM_LIBDIR}/cmake/nnmod/nnmodConfig.cmake
          ${NNM_LIBDIR}/cmake/nnmod/nnmodConfigVersion.cmake
          ${NNM_LIBDIR}/cmake/nnmod/nnmodTargets.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${prefix}/${f}")
  endif()
endforeach()
file(GLOB _plugins "${prefix}/${NNM_LIBDIR}/nnmod/plugins/*.so")
if(NOT _plugins)
  message(FATAL_ERROR "no plugins installed in ${prefix}/${NNM_LIBDIR}/nnmod/plugins")
endif()
file(GLOB _private "${prefix}/include/*.h" "${prefix}/include/nnmod/*internal*")
if(_private)
  message(FATAL_ERROR "non-public headers installed: ${_private}")
endif()

# -- 2. pkg-config ------------------------------------------------------------
find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(PKG_CONFIG)
  set(pc ${CMAKE_COMMAND} -E env "PKG_CONFIG_PATH=${prefix}/${NNM_LIBDIR}/pkgconfig"
         PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent
         "${PKG_CONFIG}")
  run(pkg-config COMMAND ${pc} --modversion nnmod)
  run(pkg-config COMMAND ${pc} --variable=plugindir nnmod)
  string(STRIP "${RUN_OUTPUT}" pc_plugindir)
  file(REAL_PATH "${pc_plugindir}" pc_plugindir)
  file(REAL_PATH "${prefix}/${NNM_LIBDIR}/nnmod/plugins" want_plugindir)
  if(NOT pc_plugindir STREQUAL want_plugindir)
    message(FATAL_ERROR "pkg-config plugindir is ${pc_plugindir}, want ${want_plugindir}")
  endif()
  run(pkg-config COMMAND ${pc} --cflags nnmod)
  string(STRIP "${RUN_OUTPUT}" pc_cflags)
  separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
  run(pkg-config COMMAND ${pc} --libs nnmod)
  if(NOT RUN_OUTPUT MATCHES "-lnnmod")
    message(FATAL_ERROR "pkg-config --libs nnmod lacks -lnnmod: ${RUN_OUTPUT}")
  endif()
else()
  message(STATUS "pkg-config not found: skipping the pkg-config checks")
endif()

# -- 3. the example, against the prefix only -----------------------------------
run(configure COMMAND "${CMAKE_COMMAND}" -S "${ex_src}" -B "${ex_build}" -G "${NNM_GENERATOR}"
                      "-DCMAKE_C_COMPILER=${NNM_C_COMPILER}" "-DCMAKE_C_FLAGS=${NNM_C_FLAGS}"
                      "-DCMAKE_BUILD_TYPE=${NNM_CONFIG}" "-DCMAKE_PREFIX_PATH=${prefix}"
                      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
                      -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
string(FIND "${RUN_OUTPUT}" "plugins in ${prefix}/" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "the example found an nnmod other than ${prefix}")
endif()
run(build COMMAND "${CMAKE_COMMAND}" --build "${ex_build}" --config "${NNM_CONFIG}")

# Single-config generators put outputs in ex_build, multi-config ones in a
# folder named after the configuration.
foreach(d "${ex_build}" "${ex_build}/${NNM_CONFIG}")
  if(EXISTS "${d}/swish_host" AND EXISTS "${d}/example_swish.so")
    set(host "${d}/swish_host")
    set(plugin "${d}/example_swish.so")
    break()
  endif()
endforeach()
if(NOT host)
  message(FATAL_ERROR "swish_host / example_swish.so not found under ${ex_build}")
endif()

# -- 4. explicit load ------------------------------------------------------------
run(host COMMAND ${env} "${host}" "${plugin}")

# -- 5. the same plugin built with pkg-config only --------------------------------
if(PKG_CONFIG)
  set(pc_plugin "${NNM_WORK_DIR}/pc/example_swish.so")
  file(MAKE_DIRECTORY "${NNM_WORK_DIR}/pc")
  run(pkg-config-build COMMAND "${NNM_C_COMPILER}" -std=c99 -Wall -Wextra ${_cflags} -shared -fPIC
                               -fvisibility=hidden ${pc_cflags} -o "${pc_plugin}"
                               "${ex_src}/swish.c")
  run(host-pkg-config COMMAND ${env} "${host}" "${pc_plugin}")
endif()

# -- 6. installed into nnmod_PLUGIN_DIR, found by discovery -----------------------
run(install-example COMMAND "${CMAKE_COMMAND}" --install "${ex_build}" --config "${NNM_CONFIG}")
if(NOT EXISTS "${prefix}/${NNM_LIBDIR}/nnmod/plugins/example_swish.so")
  message(FATAL_ERROR "the example's install did not put its plugin in nnmod_PLUGIN_DIR")
endif()
run(host-discover COMMAND ${env} "${host}" --discover)

# -- 6b. builds that keep building (issue 20) -------------------------------------
# A plugin written for nnmod 0.2 asks for find_package(nnmod 0.2): it
# configures (same plugin ABI major) and gets nnmod::headers only; linking
# nnmod::nnmod under that request fails (the application API keeps its check).
set(old_src "${NNM_SOURCE_DIR}/tests/names/old_plugin")
set(old_build "${NNM_WORK_DIR}/old-plugin-build")
set(_cfg_args -G "${NNM_GENERATOR}" "-DCMAKE_C_COMPILER=${NNM_C_COMPILER}"
              "-DCMAKE_C_FLAGS=${NNM_C_FLAGS}" "-DCMAKE_BUILD_TYPE=${NNM_CONFIG}"
              "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
              -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
run(old-plugin-configure COMMAND "${CMAKE_COMMAND}" -S "${old_src}" -B "${old_build}" ${_cfg_args})
if(NOT RUN_OUTPUT MATCHES "answers the request for 0.2 as a plugin build")
  message(FATAL_ERROR "find_package(nnmod 0.2) did not say it answered as a plugin build")
endif()
run(old-plugin-build COMMAND "${CMAKE_COMMAND}" --build "${old_build}" --config "${NNM_CONFIG}")
file(GLOB_RECURSE _old_so "${old_build}/nnm_acme_old.so")
if(NOT _old_so)
  message(FATAL_ERROR "nnm_acme_old.so not built under ${old_build}")
endif()
list(GET _old_so 0 _old_so)
get_filename_component(_old_dir "${_old_so}" DIRECTORY)
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${old_src}" -B "${NNM_WORK_DIR}/old-app-build"
                        ${_cfg_args} -DAS_APPLICATION=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0 OR NOT out MATCHES "nnmod::nnmod")
  message(FATAL_ERROR "an application asking for nnmod 0.2 configured against "
                      "nnmod::nnmod of this release (${rc}):\n${out}")
endif()
# The plugin contract as a package of its own, versioned by the plugin ABI.
set(pc_src "${NNM_WORK_DIR}/plugin-pkg")
file(MAKE_DIRECTORY "${pc_src}")
file(WRITE "${pc_src}/CMakeLists.txt" "cmake_minimum_required(VERSION 3.16)
project(p LANGUAGES C)
find_package(nnmod_plugin \${WANT} REQUIRED)
if(NOT TARGET nnmod::headers OR TARGET nnmod::nnmod OR NOT EXISTS \"\${nnmod_plugin_PLUGIN_DIR}\")
  message(FATAL_ERROR \"nnmod_plugin: wrong targets or plugin dir\")
endif()
message(STATUS \"nnmod_plugin \${nnmod_plugin_VERSION} for \${WANT}\")
")
foreach(want 1.0 1.2 1.5)
  run(plugin-package-${want} COMMAND "${CMAKE_COMMAND}" -S "${pc_src}" -B "${pc_src}/b${want}"
                                     ${_cfg_args} -DWANT=${want})
endforeach()
foreach(want 2.0 0.9 1.99)
  execute_process(COMMAND "${CMAKE_COMMAND}" -S "${pc_src}" -B "${pc_src}/b${want}" ${_cfg_args}
                          -DWANT=${want} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(rc EQUAL 0)
    message(FATAL_ERROR "find_package(nnmod_plugin ${want}) was accepted")
  endif()
endforeach()
if(PKG_CONFIG)
  run(pkg-config-plugin COMMAND ${pc} --cflags "nnmod-plugin >= 1.2")
  run(pkg-config-plugin COMMAND ${pc} --modversion nnmod-plugin)
  string(STRIP "${RUN_OUTPUT}" _abi)
  if(NOT _abi MATCHES "^1\\.[0-9]+$")
    message(FATAL_ERROR "nnmod-plugin.pc: version ${_abi} is not the plugin ABI")
  endif()
  execute_process(COMMAND ${pc} --exists "nnmod-plugin >= 2" RESULT_VARIABLE rc)
  if(rc EQUAL 0)
    message(FATAL_ERROR "pkg-config accepted nnmod-plugin >= 2")
  endif()
endif()
# It loads beside nnmod's own gelu and layer_norm: the installed nnm lists
# both, and the plain names stay nnmod's.
run(old-plugin-list COMMAND ${env} "${prefix}/bin/nnm" plugins --plugins "${_old_dir}")
foreach(_want "acme_old.gelu +1.0.0 +no plain name: nnmod's library has gelu"
              "nnmod.gelu +1.0.0 +plain name: gelu" " 0 failed")
  if(NOT RUN_OUTPUT MATCHES "${_want}")
    message(FATAL_ERROR "nnm plugins: no line matching '${_want}'")
  endif()
endforeach()

# -- 7. README.md's application line, as written ---------------------------------
if(PKG_CONFIG)
  file(READ "${NNM_SOURCE_DIR}/README.md" _readme)
  string(REGEX MATCH "cc -o my_app my_app\\.c[^\n]*\\\\\n[^\n]*" _line "${_readme}")
  if(NOT _line)
    message(FATAL_ERROR "README.md: no 'cc -o my_app my_app.c ...' line (two lines, '\\' joined)")
  endif()
  string(REPLACE "\\\n" " " _line "${_line}")
  # the build's compiler, and its flags (a sanitizer build's libnnmod needs
  # the program linked with the sanitizer too); the rest exactly as written
  string(REPLACE "cc -o" "\"${NNM_C_COMPILER}\" ${NNM_C_FLAGS} -o" _line "${_line}")
  set(app_dir "${NNM_WORK_DIR}/app")
  file(MAKE_DIRECTORY "${app_dir}")
  file(WRITE "${app_dir}/my_app.c" "#include <stdio.h>\n#include <nnmod/nnmod.h>\n"
       "int main(void) {\n    nnm_ctx *ctx = NULL;\n"
       "    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;\n"
       "    printf(\"libnnmod %s\\n\", nnm_version());\n    nnm_ctx_free(ctx);\n    return 0;\n}\n")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${prefix}/${NNM_LIBDIR}/pkgconfig"
                          sh -c "${_line}"
                  WORKING_DIRECTORY "${app_dir}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out
                  ERROR_VARIABLE _out)
  message(STATUS "[readme-app-build] ${_line}\n${_out}")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "README.md's application line failed to build (${_rc})")
  endif()
  # run as a user would: no LD_LIBRARY_PATH; the rpath must find libnnmod.so.0
  run(readme-app COMMAND "${CMAKE_COMMAND}" -E env --unset=LD_LIBRARY_PATH --unset=NNM_PLUGIN_PATH
                         "${app_dir}/my_app")
endif()

message(STATUS "install test passed")
