# Install rules: the headers, a CMake package (concurConfig.cmake, its version file and the
# exported concur::concur target) and a pkg-config file. concur is header-only, so everything
# goes to architecture-independent places.

include(CMakePackageConfigHelpers)

set(CONCUR_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/concur"
    CACHE STRING "Where concur's CMake package files are installed")
set(CONCUR_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Where concur.pc is installed")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.hpp")
install(TARGETS concur EXPORT concurTargets)
install(EXPORT concurTargets
        NAMESPACE concur::
        DESTINATION "${CONCUR_INSTALL_CMAKEDIR}")
# concur::listener in a file of its own: the package config loads it only where OpenSSL is
# found, so that a consumer without OpenSSL still gets concur::concur.
if(TARGET concur_listener)
  install(TARGETS concur_listener EXPORT concurListenerTargets)
  install(EXPORT concurListenerTargets
          NAMESPACE concur::
          DESTINATION "${CONCUR_INSTALL_CMAKEDIR}")
endif()

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/concurConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/concurConfig.cmake"
  INSTALL_DESTINATION "${CONCUR_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/concurConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/concurConfig.cmake"
              "${PROJECT_BINARY_DIR}/concurConfigVersion.cmake"
        DESTINATION "${CONCUR_INSTALL_CMAKEDIR}")

# pkg-config: paths are written relative to the .pc file so that the installed tree can move.
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(CONCUR_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(CONCUR_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
file(RELATIVE_PATH CONCUR_PC_PREFIX_FROM_PCFILEDIR
     "/prefix/${CONCUR_INSTALL_PKGCONFIGDIR}" "/prefix")
set(CONCUR_PC_LIBS "")
foreach(lib IN LISTS CMAKE_DL_LIBS)
  string(APPEND CONCUR_PC_LIBS " -l${lib}")
endforeach()
configure_file("${PROJECT_SOURCE_DIR}/cmake/concur.pc.in" "${PROJECT_BINARY_DIR}/concur.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/concur.pc" DESTINATION "${CONCUR_INSTALL_PKGCONFIGDIR}")
