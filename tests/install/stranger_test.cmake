# tests/install/stranger_test.cmake - run with cmake -P (tests/install/CMakeLists.txt).
#
# Third-party plugins and applications built from the docs alone, against an
# installed nnmod (a fresh prefix), the way a stranger builds them:
#  1. cmake --install into a fresh prefix.
#  2. The C plugin with a plain compiler line and pkg-config (writing-a-plugin.md
#     section 2), -std=c99 -Wall -Wextra -Werror -pedantic; the C++ plugin with
#     g++ -Wall -Wextra -Werror -pedantic as C++20, C++17 and C++11
#     (writing-a-plugin.md section 8); each exports nnm_plugin_entry only.
#  3. The same plugins and the application stranger_host with the CMake
#     packages (find_package(nnmod_plugin 1.5), find_package(nnmod 0.4)).
#  4. stranger_host on the plugins of 2 and of 3: forward values, gradients
#     (own backward vs autograd vs finite differences), a buffer updated in
#     training, safetensors round trips, config and shape errors, version
#     negotiation (a later minor loads, a refusing plugin and ABI 2 do not).
#  5. The installed nnm: plugins, validate (a config error with its document
#     path), inspect and run of a manifest made of the three languages' layers.
#  6. Python (the ctypes binding, a Python with NumPy: NNM_PYTHON), Rust (a
#     plugin with nnmod-plugin and an application with nnmod, cargo --offline:
#     NNM_CARGO) and Go (NNM_GO), each against the installed library; a tool
#     that is missing skips its part (said in the output).
cmake_minimum_required(VERSION 3.25)

foreach(v NNM_BUILD_DIR NNM_SOURCE_DIR NNM_WORK_DIR NNM_GENERATOR NNM_C_COMPILER NNM_CXX_COMPILER
          NNM_LIBDIR)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "stranger_test.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT NNM_CONFIG)
  set(NNM_CONFIG RelWithDebInfo)
endif()
separate_arguments(_cflags UNIX_COMMAND "${NNM_C_FLAGS}")

set(src "${NNM_SOURCE_DIR}/tests/install/stranger")
set(prefix "${NNM_WORK_DIR}/prefix")
set(libdir "${prefix}/${NNM_LIBDIR}")
set(plug "${NNM_WORK_DIR}/plugins")   # what the plain compiler lines build
file(REMOVE_RECURSE "${NNM_WORK_DIR}")
file(MAKE_DIRECTORY "${NNM_WORK_DIR}" "${plug}")

# run(<step> COMMAND ... [EXPECT regex...]): runs in NNM_WORK_DIR, echoes the
# output, fails the test on a non-zero exit or a missing regex.
function(run step)
  cmake_parse_arguments(R "" "" "COMMAND;EXPECT" ${ARGN})
  message(STATUS "[${step}] ${R_COMMAND}")
  execute_process(COMMAND ${R_COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
                  WORKING_DIRECTORY "${NNM_WORK_DIR}")
  message("${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[${step}] failed (${rc})")
  endif()
  foreach(want IN LISTS R_EXPECT)
    if(NOT out MATCHES "${want}")
      message(FATAL_ERROR "[${step}] printed no line matching '${want}'")
    endif()
  endforeach()
  set(RUN_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

# Programs not built with the sanitizers (Python, Rust, Go) get their
# runtimes preloaded (NNM_PRELOAD); only the installed library on the path.
set(env "${CMAKE_COMMAND}" -E env --unset=NNM_PLUGIN_PATH "LD_LIBRARY_PATH=${libdir}"
        "PKG_CONFIG_PATH=${libdir}/pkgconfig")
set(env_foreign ${env})
if(NNM_PRELOAD)
  list(APPEND env_foreign "LD_PRELOAD=${NNM_PRELOAD}" "ASAN_OPTIONS=detect_leaks=0")
endif()

# -- 1. install -------------------------------------------------------------------
run(install COMMAND "${CMAKE_COMMAND}" --install "${NNM_BUILD_DIR}" --prefix "${prefix}"
                    --config "${NNM_CONFIG}")

# -- 2. plain compiler lines --------------------------------------------------------
find_program(PKG_CONFIG NAMES pkg-config pkgconf)
if(NOT PKG_CONFIG)
  message(FATAL_ERROR "pkg-config not found")
endif()
set(pc ${CMAKE_COMMAND} -E env "PKG_CONFIG_PATH=${libdir}/pkgconfig" "${PKG_CONFIG}")
run(pkg-config COMMAND ${pc} --cflags "nnmod-plugin >= 1.5")
string(STRIP "${RUN_OUTPUT}" pc_cflags)
separate_arguments(pc_cflags UNIX_COMMAND "${pc_cflags}")
set(strict -Wall -Wextra -Werror -pedantic)
run(cc-plugin COMMAND "${NNM_C_COMPILER}" -std=c99 ${strict} ${_cflags} -shared -fPIC -fvisibility=hidden
                      ${pc_cflags} -o "${plug}/stranger_layers.so" "${src}/stranger_layers.c")
foreach(std c++20 c++17 c++11)
  run(cxx-plugin-${std} COMMAND "${NNM_CXX_COMPILER}" -std=${std} ${strict} ${_cflags} -shared -fPIC
                                -fvisibility=hidden ${pc_cflags} -o "${NNM_WORK_DIR}/softsign_${std}.so"
                                "${src}/softsign.cpp")
endforeach()
file(COPY_FILE "${NNM_WORK_DIR}/softsign_c++20.so" "${plug}/stranger_cxx.so")
set(_fnames stranger_future stranger_picky stranger_major2)
foreach(mode 1 2 3)
  math(EXPR i "${mode} - 1")
  list(GET _fnames ${i} n)
  run(cc-${n} COMMAND "${NNM_C_COMPILER}" -std=c99 ${strict} ${_cflags} -DFUTURE_MODE=${mode} -shared -fPIC
                      -fvisibility=hidden ${pc_cflags} -o "${NNM_WORK_DIR}/${n}.so" "${src}/future_plugin.c")
endforeach()
# hidden visibility leaves one exported symbol (writing-a-plugin.md's checklist)
find_program(NM NAMES nm)
if(NM)
  foreach(so "${plug}/stranger_layers.so" "${NNM_WORK_DIR}/softsign_c++20.so" "${NNM_WORK_DIR}/softsign_c++17.so")
    execute_process(COMMAND "${NM}" -D --defined-only "${so}" OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
    string(REGEX MATCHALL "[^\n]+ [TDBRVW] [^\n]+" syms "${syms}")
    if(NOT rc EQUAL 0 OR NOT syms MATCHES "nnm_plugin_entry" OR syms MATCHES ";")
      message(FATAL_ERROR "${so} exports more or less than nnm_plugin_entry: ${syms}")
    endif()
  endforeach()
endif()

# -- 3. the CMake packages -----------------------------------------------------------
set(cm_build "${NNM_WORK_DIR}/cmake-build")
run(cmake-configure COMMAND "${CMAKE_COMMAND}" -S "${src}" -B "${cm_build}" -G "${NNM_GENERATOR}"
                            "-DCMAKE_C_COMPILER=${NNM_C_COMPILER}" "-DCMAKE_CXX_COMPILER=${NNM_CXX_COMPILER}"
                            "-DCMAKE_C_FLAGS=${NNM_C_FLAGS} -Werror" "-DCMAKE_CXX_FLAGS=${NNM_C_FLAGS} -Werror"
                            "-DCMAKE_BUILD_TYPE=${NNM_CONFIG}" "-DCMAKE_PREFIX_PATH=${prefix}"
                            -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
                    EXPECT "stranger: nnmod_plugin 1\\.[0-9]+, plugins in ${prefix}/")
run(cmake-build COMMAND "${CMAKE_COMMAND}" --build "${cm_build}" --config "${NNM_CONFIG}")
set(bin "${cm_build}")
if(EXISTS "${cm_build}/${NNM_CONFIG}/stranger_host")
  set(bin "${cm_build}/${NNM_CONFIG}")
endif()

# -- 4. the C application on both builds of the plugins ----------------------------------
run(host-plain COMMAND ${env} "${bin}/stranger_host" "${plug}/stranger_layers.so" "${plug}/stranger_cxx.so"
                       "${NNM_WORK_DIR}/stranger_future.so" "${NNM_WORK_DIR}/stranger_picky.so"
                       "${NNM_WORK_DIR}/stranger_major2.so" "${NNM_WORK_DIR}"
               EXPECT "stranger_host: all checks passed")
run(host-cmake COMMAND ${env} "${bin}/stranger_host" "${bin}/stranger_layers.so" "${bin}/stranger_cxx.so"
                       "${bin}/stranger_future.so" "${bin}/stranger_picky.so" "${bin}/stranger_major2.so"
                       "${NNM_WORK_DIR}"
               EXPECT "stranger_host: all checks passed")
# the C++11/17 build of the same layer answers like the C++20 one
foreach(std c++17 c++11)
  run(host-${std} COMMAND ${env} "${bin}/stranger_host" "${plug}/stranger_layers.so"
                          "${NNM_WORK_DIR}/softsign_${std}.so" "${bin}/stranger_future.so"
                          "${bin}/stranger_picky.so" "${bin}/stranger_major2.so" "${NNM_WORK_DIR}"
                  EXPECT "stranger_host: all checks passed")
endforeach()

# -- 5. the installed nnm ------------------------------------------------------------------
set(nnm ${env} "${prefix}/bin/nnm")
set(model "${src}/stranger_model.json")
run(nnm-plugins COMMAND ${nnm} plugins --plugins "${plug}"
                EXPECT "stranger_layers +ABI 1\\.[0-9]+ +3 layers"
                       "stranger\\.scaled_tanh +1\\.0\\.0 +qualified only"
                       "stranger_cxx\\.softsign +1\\.0\\.0")
run(nnm-validate COMMAND ${nnm} validate --plugins "${plug}" "${model}"
                 EXPECT "ok \\(4 modules, 2 parameters\\)")
run(nnm-inspect COMMAND ${nnm} inspect --plugins "${plug}" "${model}"
                EXPECT "\\(act\\): ScaledTanh\\(init_scale=2\\)" "\\(norm\\): TrackMean\\(3, momentum=0\\.1\\)"
                       "\\(soft\\): Softsign\\(alpha=0\\.5, learn_alpha=True\\)"
                       "stranger\\.scaled_tanh +\\^1 +-> 1\\.0\\.0")
run(nnm-run COMMAND ${nnm} run --plugins "${plug}" "${model}" --input 2x3 --eval
            EXPECT "output 0: shape \\[2, 3\\], f32, 6 values")
# a config the layer's schema refuses: the message has the document path
file(READ "${model}" _m)
string(REPLACE "\"init_scale\": 2.0" "\"init_scale\": \"two\"" _bad "${_m}")
file(WRITE "${NNM_WORK_DIR}/bad_model.json" "${_bad}")
execute_process(COMMAND ${nnm} validate --plugins "${plug}" "${NNM_WORK_DIR}/bad_model.json"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
message(STATUS "[nnm-validate-bad] ${out}")
if(NOT rc EQUAL 1 OR NOT out MATCHES "root\\.children\\[0\\]\\.config\\.init_scale: expected float, got string")
  message(FATAL_ERROR "nnm validate of a bad config: exit ${rc}, no document path")
endif()

set(plugins_for_bindings "${plug}/stranger_layers.so" "${plug}/stranger_cxx.so")

# -- 6a. Rust: a plugin (nnmod-plugin) ---------------------------------------------------
if(NNM_CARGO)
  set(cargo_env ${env} "CARGO_TARGET_DIR=${NNM_WORK_DIR}/cargo-target" "CARGO_NET_OFFLINE=true")
  foreach(crate rs_plugin rs_app)
    file(COPY "${src}/${crate}" DESTINATION "${NNM_WORK_DIR}")
    file(READ "${src}/${crate}/Cargo.toml.in" _toml)
    string(REPLACE "@NNMOD_SRC@" "${NNM_SOURCE_DIR}" _toml "${_toml}")
    file(WRITE "${NNM_WORK_DIR}/${crate}/Cargo.toml" "${_toml}")
  endforeach()
  run(rust-plugin COMMAND ${cargo_env} "${NNM_CARGO}" build --offline --quiet
                          --manifest-path "${NNM_WORK_DIR}/rs_plugin/Cargo.toml")
  file(COPY_FILE "${NNM_WORK_DIR}/cargo-target/debug/libstranger_rs.so" "${plug}/stranger_rs.so")
  list(APPEND plugins_for_bindings "${plug}/stranger_rs.so")
  string(REPLACE "\"sequential\": \"^1\"," "\"sequential\": \"^1\", \"stranger_rs.scaled_tanh\": \"^1\","
         _rs "${_m}")
  string(REPLACE "\"children\": [" "\"children\": [{\"name\": \"rs\", \"type\": \"stranger_rs.scaled_tanh\", \"config\": {\"init_scale\": 0.5}},"
         _rs "${_rs}")
  file(WRITE "${NNM_WORK_DIR}/rs_model.json" "${_rs}")
  run(nnm-run-rust COMMAND ${nnm} run --plugins "${plug}" "${NNM_WORK_DIR}/rs_model.json" --input 2x3
                   EXPECT "output 0: shape \\[2, 3\\], f32, 6 values")
  run(nnm-inspect-rust COMMAND ${nnm} inspect --plugins "${plug}" "${NNM_WORK_DIR}/rs_model.json"
                       EXPECT "\\(rs\\): ScaledTanh\\(init_scale=0\\.5\\)")
  # its declared schema: a misspelt key is refused with the document path
  string(REPLACE "{\"init_scale\": 0.5}" "{\"init_scael\": 0.5}" _rsbad "${_rs}")
  file(WRITE "${NNM_WORK_DIR}/rs_bad.json" "${_rsbad}")
  execute_process(COMMAND ${nnm} validate --plugins "${plug}" "${NNM_WORK_DIR}/rs_bad.json"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  message(STATUS "[nnm-validate-rust-bad] ${out}")
  if(NOT rc EQUAL 1 OR NOT out MATCHES "root\\.children\\[0\\]\\.config.*init_scael")
    message(FATAL_ERROR "a Rust layer's schema did not refuse a misspelt key with its path (exit ${rc})")
  endif()
  # -- 6b. Rust: an application (nnmod) on the installed library --------------------------
  run(rust-app-build COMMAND ${cargo_env} "${NNM_CARGO}" build --offline --quiet
                             --manifest-path "${NNM_WORK_DIR}/rs_app/Cargo.toml")
  run(rust-app COMMAND ${env_foreign} "${NNM_WORK_DIR}/cargo-target/debug/stranger_rs_app" "${NNM_WORK_DIR}"
                       ${plugins_for_bindings}
               EXPECT "stranger_rs\\.scaled_tanh: ScaledTanh\\(init_scale=1\\.5\\)  # 1 params"
                      "stranger_rs_app: all checks passed")
else()
  message(STATUS "no cargo: the Rust parts are skipped")
endif()

# -- 6c. Python ---------------------------------------------------------------------------
if(NNM_PYTHON)
  run(python COMMAND ${env_foreign} "PYTHONPATH=${NNM_SOURCE_DIR}/bindings/python" PYTHONDONTWRITEBYTECODE=1
                     "NNMOD_LIBRARY=${libdir}/libnnmod.so" "${NNM_PYTHON}" "${src}/stranger_python.py"
                     "${NNM_WORK_DIR}" ${plugins_for_bindings}
             EXPECT "stranger_python: all checks passed")
else()
  message(STATUS "no Python with NumPy: the Python part is skipped")
endif()

# -- 6d. Go --------------------------------------------------------------------------------
if(NNM_GO)
  file(COPY "${src}/go_app" DESTINATION "${NNM_WORK_DIR}")
  file(READ "${src}/go_app/go.mod.in" _mod)
  string(REPLACE "@NNMOD_SRC@" "${NNM_SOURCE_DIR}" _mod "${_mod}")
  file(WRITE "${NNM_WORK_DIR}/go_app/go.mod" "${_mod}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env "GOPATH=${NNM_GO_HOME}/path" "GOCACHE=${NNM_GO_HOME}/cache" "PKG_CONFIG_PATH=${libdir}/pkgconfig"
                          GOPROXY=off GOFLAGS=-mod=mod GOSUMDB=off GOTOOLCHAIN=local CGO_ENABLED=1
                          "${NNM_GO}" build -o "${NNM_WORK_DIR}/stranger_go" .
                  WORKING_DIRECTORY "${NNM_WORK_DIR}/go_app" RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  message(STATUS "[go-build] ${out}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[go-build] failed (${rc})")
  endif()
  run(go COMMAND ${env_foreign} "${NNM_WORK_DIR}/stranger_go" "${NNM_WORK_DIR}" ${plugins_for_bindings}
         EXPECT "stranger_go: all checks passed")
else()
  message(STATUS "no go: the Go part is skipped")
endif()

message(STATUS "stranger test passed")
