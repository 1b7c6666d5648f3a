# tests/cuda/dnn.cmake - the cuDNN concern's suites (included from CMakeLists.txt).

# The cuDNN concern's pure-C half (nnm args -> descriptor numbers, the conv
# algorithm cache, pooling geometry), compiled in on its own: runs everywhere,
# GPU, CUDA toolkit and cuDNN or not.
nnm_add_test(test_cuda_dnn_plan SOURCES test_cuda_dnn_plan.c
             "${PROJECT_SOURCE_DIR}/plugins/cuda/cuda_dnn_plan.c")
target_include_directories(test_cuda_dnn_plan PRIVATE "${PROJECT_SOURCE_DIR}/plugins/cuda")
target_link_libraries(test_cuda_dnn_plan PRIVATE ${CMAKE_DL_LIBS} m)
target_compile_definitions(test_cuda_dnn_plan PRIVATE NNM_TEST_PLUGIN_DIR="${NNM_BUILD_PLUGIN_DIR}")
add_dependencies(test_cuda_dnn_plan cpu) # the pooling bodies are compared with its slots
# Where the build found cudnn.h: the backend's descriptor code (cuda_dnn_desc.c)
# against the real libcudnn, host calls only (skips where libcudnn is absent).
if(TARGET cuda AND NNM_CUDNN_INCLUDE_DIR)
  find_package(CUDAToolkit QUIET)
  target_sources(test_cuda_dnn_plan PRIVATE "${PROJECT_SOURCE_DIR}/plugins/cuda/cuda_dnn_desc.c")
  target_include_directories(test_cuda_dnn_plan PRIVATE "${NNM_CUDNN_INCLUDE_DIR}"
                             ${CUDAToolkit_INCLUDE_DIRS})
  target_compile_definitions(test_cuda_dnn_plan PRIVATE NNM_TEST_CUDNN=1
                             NNM_TEST_CUDA_LIBDIR="${CUDAToolkit_LIBRARY_DIR}")
endif()

# The cuDNN concern on a GPU (conv, pool, batch norm slots vs references and
# the cpu backend); elsewhere "test_cuda_dnn: SKIPPED: no CUDA device ...".
nnm_add_test(test_cuda_dnn SOURCES test_cuda_dnn.c LIBS ${CMAKE_DL_LIBS} m)
target_compile_definitions(test_cuda_dnn PRIVATE NNM_TEST_PLUGIN_DIR="${NNM_BUILD_PLUGIN_DIR}")
add_dependencies(test_cuda_dnn cpu conv pool normalization)
if(TARGET cuda)
  target_compile_definitions(test_cuda_dnn PRIVATE NNM_TEST_HAVE_CUDA_PLUGIN=1)
  add_dependencies(test_cuda_dnn cuda)
  if(NNM_CUDNN_INCLUDE_DIR)
    target_compile_definitions(test_cuda_dnn PRIVATE NNM_TEST_CUDA_HAVE_CUDNN=1)
  endif()
endif()
if(NNM_SANITIZE)
  set_tests_properties(test_cuda_dnn PROPERTIES ENVIRONMENT_MODIFICATION
    "ASAN_OPTIONS=path_list_append:protect_shadow_gap=0;LSAN_OPTIONS=path_list_append:suppressions=${CMAKE_CURRENT_SOURCE_DIR}/lsan.supp")
endif()
