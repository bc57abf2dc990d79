# Builds and runs the consumer program one way (cmake -P script, driven by ctest).
#   MODE         find_package | add_subdirectory | fetchcontent | pkg-config
#   SOURCE       the consumer project's directory
#   BINARY       a scratch build directory (emptied first)
#   CONCUR_SOURCE_DIR, PREFIX (the installed concur), GENERATOR, CXX

file(REMOVE_RECURSE "${BINARY}")
file(MAKE_DIRECTORY "${BINARY}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "pkg-config")
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/share/pkgconfig")
  run_step("pkg-config" pkg-config --cflags --libs concur)
  string(STRIP "${step_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run_step("compile with pkg-config flags"
           "${CXX}" -std=c++20 "${SOURCE}/main.cpp" ${flags} -o "${BINARY}/consumer")
else()
  run_step("configure"
           "${CMAKE_COMMAND}" -S "${SOURCE}" -B "${BINARY}" -G "${GENERATOR}"
           "-DCMAKE_CXX_COMPILER=${CXX}" "-DCONSUMER_MODE=${MODE}"
           "-DCONCUR_SOURCE_DIR=${CONCUR_SOURCE_DIR}" "-DCMAKE_PREFIX_PATH=${PREFIX}"
           -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  run_step("build" "${CMAKE_COMMAND}" --build "${BINARY}")
endif()

run_step("run" "${BINARY}/consumer")
if(NOT step_output MATCHES "consumer ok: concur [0-9]+\\.[0-9]+\\.[0-9]+, thread consumer-worker ran")
  message(FATAL_ERROR "unexpected consumer output: ${step_output}")
endif()
message(STATUS "${MODE}: ${step_output}")
