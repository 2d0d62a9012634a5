# attnlab_add_plugin(NAME SOURCES...) — build a plugin library.
#
# Produces libattnlab_plugin_NAME.so, a MODULE (loaded at run time, never linked) with hidden
# symbols except the two entry points that ATTNLAB_PLUGIN defines. The same function serves the
# plugins in this repository and plugins built elsewhere with find_package(attnlab). A build
# without a build type (single-configuration generators) is made a Release build: an unoptimised
# plugin would be the slowest part of every model that uses it.
function(attnlab_add_plugin name)
  if(NOT CMAKE_CONFIGURATION_TYPES AND NOT CMAKE_BUILD_TYPE)
    set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type (attnlab_add_plugin defaults to Release)" FORCE)
    set(CMAKE_BUILD_TYPE Release PARENT_SCOPE)
    message(STATUS "attnlab_add_plugin: no CMAKE_BUILD_TYPE given, building Release")
  endif()
  set(target attnlab_plugin_${name})
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE attnlab::core)
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME attnlab_plugin_${name}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ATTNLAB_IN_TREE)
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/attnlab/plugins)
  endif()
endfunction()
