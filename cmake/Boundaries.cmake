# The module boundaries, kept by the build. No target has the source tree as
# an include directory; each library instead gets two directories under
# build/include, made of symbolic links into the source tree:
#   FOLDER.public/FOLDER/H  for each header H the library publishes: what the
#                           targets that link it can include;
#   FOLDER.internal/FOLDER  the whole folder: what its own sources (and, through
#                           wgd_FOLDER_internal, its own tests) can include.
# A role links no other role, so `#include "leased/leased.hpp"` in netd/ finds
# no such file; tests/CMakeLists.txt has a probe per forbidden direction.
set(WGD_INCLUDE_STAGE ${CMAKE_BINARY_DIR}/include)

# A directory in which "FOLDER/..." reaches the whole of the source folder
# FOLDER (tests/, fuzz/: the test helpers their programs share).
function(wgd_folder_include_dir folder out_var)
  set(dir ${WGD_INCLUDE_STAGE}/${folder}.internal)
  file(MAKE_DIRECTORY ${dir})
  file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${dir}/${folder} SYMBOLIC)
  set(${out_var} ${dir} PARENT_SCOPE)
endfunction()

# wgd_library(FOLDER PUBLIC header... [LINK target...]): the static library
# wgd_FOLDER of FOLDER/*.cpp, publishing the headers named (relative to
# FOLDER), linking LINK publicly; and the interface target
# wgd_FOLDER_internal, for its tests, that reaches every header of FOLDER.
function(wgd_library folder)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "PUBLIC;LINK")
  set(source_dir ${PROJECT_SOURCE_DIR}/${folder})
  file(GLOB sources CONFIGURE_DEPENDS ${source_dir}/*.cpp)
  add_library(wgd_${folder} STATIC ${sources})

  set(public ${WGD_INCLUDE_STAGE}/${folder}.public)
  file(REMOVE_RECURSE ${public})
  file(MAKE_DIRECTORY ${public}/${folder})
  foreach(header ${arg_PUBLIC})
    if(NOT EXISTS ${source_dir}/${header})
      message(FATAL_ERROR "wgd_${folder} publishes ${folder}/${header}, which does not exist")
    endif()
    file(CREATE_LINK ${source_dir}/${header} ${public}/${folder}/${header} SYMBOLIC)
  endforeach()
  wgd_folder_include_dir(${folder} internal)

  target_include_directories(wgd_${folder} PRIVATE ${internal} PUBLIC ${public})
  target_link_libraries(wgd_${folder} PUBLIC ${arg_LINK})
  add_library(wgd_${folder}_internal INTERFACE)
  target_include_directories(wgd_${folder}_internal INTERFACE ${internal})
  target_link_libraries(wgd_${folder}_internal INTERFACE wgd_${folder})
endfunction()
