# Every target of the project compiles clean under these; -Werror is opt-in
# (WERROR=ON) so that a newer compiler's new warning does not break a user's build.
add_compile_options(-Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wformat=2 -Wno-missing-field-initializers)
option(WERROR "Treat warnings as errors" OFF)
if(WERROR)
  add_compile_options(-Werror)
endif()
