# Builds and runs the consumer program one way (cmake -P script, driven by ctest).
#   MODE         find_package | add_subdirectory | fetchcontent | pkg-config | install_recipe
#   SOURCE       the consumer project's directory
#   BINARY       a scratch build directory (emptied first)
#   CONCUR_SOURCE_DIR, PREFIX (the installed concur), GENERATOR, CXX
#
# install_recipe is find_package against a concur installed here, from scratch, as README.md's
# recipe does it: tests, benchmarks and examples off, and GoogleTest and Google Benchmark made
# unfindable, since installing the headers must need neither.

file(REMOVE_RECURSE "${BINARY}")
file(MAKE_DIRECTORY "${BINARY}")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "install_recipe")
  set(PREFIX "${BINARY}/prefix")
  run_step("configure concur as the README's install recipe does"
           "${CMAKE_COMMAND}" -S "${CONCUR_SOURCE_DIR}" -B "${BINARY}/concur" -G "${GENERATOR}"
           "-DCMAKE_CXX_COMPILER=${CXX}" -DCONCUR_BUILD_TESTS=OFF -DCONCUR_BUILD_BENCHMARKS=OFF
           -DCONCUR_BUILD_EXAMPLES=OFF -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON
           -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON)
  run_step("install concur" "${CMAKE_COMMAND}" --install "${BINARY}/concur" --prefix "${PREFIX}")
  set(BINARY "${BINARY}/consumer")
  set(MODE find_package)
endif()

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
