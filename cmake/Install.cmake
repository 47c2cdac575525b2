# `cmake --install` layout, and the package config that lets another project write
#
#   find_package(perfmem REQUIRED)
#   target_link_libraries(app PRIVATE perfmem::vmcu)   # or perfmem::sida, perfmem::acrobat, perfmem::core
#
#   bin/                       vmcu, sida, acrobat
#   lib/                       the static libraries
#   include/perfmem/...        public headers (include/vmcu/ for the freestanding MCU kernels)
#   share/perfmem/acrobat/models/*.acr    the bundled ACRoBat models
#   share/perfmem/sida/        the PyTorch speed baseline that `sida bench` runs
#   lib/cmake/perfmem/         perfmemConfig.cmake, its version file and the exported targets
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Targets users link, by their exported names (perfmem::<name>).
set(_perfmem_exported perfmem_core:core vmcu_mcu:vmcu_mcu vmcu_lib:vmcu perfmem_sida:sida perfmem_acrobat:acrobat)
set(_perfmem_targets perfmem_options)
foreach(pair IN LISTS _perfmem_exported)
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 target)
  list(GET pair 1 exported)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${exported})
  list(APPEND _perfmem_targets ${target})
endforeach()
# The warning flags are linked privately; static libraries still name them in their link
# interface, so the (empty at link time) options target travels with the export.
set_target_properties(perfmem_options PROPERTIES EXPORT_NAME options)

install(TARGETS ${_perfmem_targets} EXPORT perfmemTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS vmcu sida acrobat RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

foreach(dir core/include vmcu/include vmcu/mcu/include sida/include acrobat/include)
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    FILES_MATCHING PATTERN "*.h")
endforeach()
install(DIRECTORY ${CMAKE_SOURCE_DIR}/acrobat/models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/perfmem/acrobat/models
  FILES_MATCHING PATTERN "*.acr")

install(EXPORT perfmemTargets NAMESPACE perfmem:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/perfmem)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/perfmemConfig.cmake.in
  ${CMAKE_BINARY_DIR}/perfmemConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/perfmem)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/perfmemConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/perfmemConfig.cmake ${CMAKE_BINARY_DIR}/perfmemConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/perfmem)
