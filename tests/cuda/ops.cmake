# tests/cuda/ops.cmake - the suites of the cuda backend's op families
# (plugins/cuda/cuda_ops.h), included by CMakeLists.txt.

# The cuda backend's kernel bodies (plugins/cuda/cuda_*_body.h, plain C) run
# on the host against the cpu backend: needs no GPU and no CUDA toolkit.
nnm_add_test(test_cuda_bodies SOURCES test_cuda_bodies.c LIBS ${CMAKE_DL_LIBS} m)
target_include_directories(test_cuda_bodies PRIVATE
  "${PROJECT_SOURCE_DIR}/plugins/cuda" "${PROJECT_SOURCE_DIR}/plugins/common")
target_compile_definitions(test_cuda_bodies PRIVATE
                           NNM_TEST_PLUGIN_DIR="${NNM_BUILD_PLUGIN_DIR}")
add_dependencies(test_cuda_bodies cpu)

# Every slot of the cuda backend's op families on a GPU against the cpu
# backend; prints "test_cuda_ops: SKIPPED: ..." and passes where there is none.
nnm_add_test(test_cuda_ops SOURCES test_cuda_ops.c LIBS ${CMAKE_DL_LIBS} m)
target_compile_definitions(test_cuda_ops PRIVATE
                           NNM_TEST_PLUGIN_DIR="${NNM_BUILD_PLUGIN_DIR}")
add_dependencies(test_cuda_ops cpu)
if(TARGET cuda)
  target_compile_definitions(test_cuda_ops PRIVATE NNM_TEST_HAVE_CUDA_PLUGIN=1)
  add_dependencies(test_cuda_ops cuda)
endif()
if(NNM_SANITIZE)
  set_tests_properties(test_cuda_ops PROPERTIES ENVIRONMENT_MODIFICATION
    "ASAN_OPTIONS=path_list_append:protect_shadow_gap=0;LSAN_OPTIONS=path_list_append:suppressions=${CMAKE_CURRENT_SOURCE_DIR}/lsan.supp")
endif()
