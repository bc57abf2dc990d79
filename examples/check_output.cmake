# Runs PROGRAM and checks that it exits with 0 and that its output matches every regular
# expression in the list EXPECT; a line that must not appear is written as "!<regex>".
execute_process(COMMAND "${PROGRAM}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endif()
foreach(pattern IN LISTS EXPECT)
  if(pattern MATCHES "^!(.*)")
    set(forbidden "${CMAKE_MATCH_1}")  # the next MATCHES overwrites CMAKE_MATCH_1
    if(out MATCHES "${forbidden}")
      message(FATAL_ERROR "output has '${forbidden}' but must not:\n${out}")
    endif()
  elseif(NOT out MATCHES "${pattern}")
    message(FATAL_ERROR "output lacks '${pattern}':\n${out}\n--- stderr ---\n${err}")
  endif()
endforeach()
message(STATUS "${out}")
