# Helpers shared by every component's CMakeLists.txt.

set(EDGELOOP_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
    -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)

# Beast takes std::string_view instead of boost::string_view; no deprecated Asio names.
set(EDGELOOP_COMMON_DEFINITIONS BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW)

function(edgeloop_apply_flags target)
  target_compile_options(${target} PRIVATE ${EDGELOOP_WARNINGS})
  if(EDGELOOP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_compile_definitions(${target} PRIVATE ${EDGELOOP_COMMON_DEFINITIONS})
  if(EDGELOOP_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                             -fno-sanitize-recover=undefined)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()

# edgeloop_library(NAME SOURCES ... DEPS ...): a component library, `edgeloop_<NAME>`, whose
# public headers are included as "NAME/header.h" from the src/ folder.
function(edgeloop_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(edgeloop_${name} STATIC)
  target_sources(edgeloop_${name} PRIVATE ${ARG_SOURCES})
  target_include_directories(edgeloop_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(edgeloop_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  edgeloop_apply_flags(edgeloop_${name})
endfunction()

# edgeloop_test(NAME SOURCES ... DEPS ...): one GoogleTest binary per component.
function(edgeloop_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  if(NOT EDGELOOP_BUILD_TESTS)
    return()
  endif()
  add_executable(${name})
  target_sources(${name} PRIVATE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  edgeloop_apply_flags(${name})
  add_test(NAME ${name} COMMAND ${name} --gtest_brief=1)
  # `unit_tests` builds every unit-test binary and nothing else (the sanitizer stage of make test).
  if(NOT TARGET unit_tests)
    add_custom_target(unit_tests)
  endif()
  add_dependencies(unit_tests ${name})
  set_tests_properties(${name} PROPERTIES LABELS unit
                       ENVIRONMENT "EDGELOOP_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
