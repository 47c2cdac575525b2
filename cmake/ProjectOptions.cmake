# Warning and sanitizer flags for project code only (third-party headers are system includes).
# -Werror is an option (off for users building by hand with another compiler; `make` and CI
# turn it on) so a new compiler's new warning cannot stop someone else's build.
option(PERFMEM_WERROR "Treat warnings in project code as errors" OFF)
add_library(perfmem_options INTERFACE)
target_compile_options(perfmem_options INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:C,CXX>,$<BOOL:${PERFMEM_WERROR}>>:-Werror>)
if(PERFMEM_SANITIZE)
  target_compile_options(perfmem_options INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(perfmem_options INTERFACE -fsanitize=address,undefined)
  target_compile_definitions(perfmem_options INTERFACE PERFMEM_SANITIZE=1)
endif()

# perfmem_add_test(NAME SOURCES... LIBS ...): one GoogleTest executable registered with CTest.
function(perfmem_add_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  # Every test can use the shared test helpers (core/testing: subprocesses, scratch folders, ...).
  target_link_libraries(${name} PRIVATE ${T_LIBS} perfmem_testing GTest::gtest GTest::gtest_main perfmem_options)
  target_compile_definitions(${name} PRIVATE
    PERFMEM_SHARED_DIR="${PERFMEM_SHARED_DIR}"
    PERFMEM_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    PERFMEM_VENV="${PERFMEM_VENV}")
  include(GoogleTest)
  # gtest_discover_tests cannot pass a list-valued property through to CTest, so several
  # labels are joined into one ("sida-slow"); `ctest -L sida` and `ctest -LE slow` take
  # regular expressions and still select by each part.
  string(REPLACE ";" "-" joined_labels "${T_LABELS}")
  # (gtest_discover_tests already makes a GTEST_SKIP'd test count as skipped in CTest's summary.)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${joined_labels}")
endfunction()

# perfmem_add_bench(NAME SOURCES... LIBS ...): one Google Benchmark executable (kernel
# micro-benchmarks; the systems' table benchmarks are plain programs).
function(perfmem_add_bench name)
  cmake_parse_arguments(B "" "" "SOURCES;LIBS" ${ARGN})
  if(NOT PERFMEM_BUILD_BENCH)
    return()
  endif()
  add_executable(${name} ${B_SOURCES})
  target_link_libraries(${name} PRIVATE ${B_LIBS} benchmark::benchmark perfmem_options)
  target_compile_definitions(${name} PRIVATE
    PERFMEM_SHARED_DIR="${PERFMEM_SHARED_DIR}"
    PERFMEM_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
endfunction()
