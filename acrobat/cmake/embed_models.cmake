# Writes OUT, a C++ source holding the text of every MODELS_DIR/*.acr file, so the bundled
# models are part of the library: the programs never look for the source folder, built or
# installed. Run at build time by acrobat/CMakeLists.txt (cmake -P).
file(GLOB models RELATIVE ${MODELS_DIR} ${MODELS_DIR}/*.acr)
list(SORT models)
set(body "")
foreach(file IN LISTS models)
  file(READ ${MODELS_DIR}/${file} text)
  if(text MATCHES "\\)acr\"")
    message(FATAL_ERROR "${file} contains the raw-string delimiter )acr\"")
  endif()
  string(REGEX REPLACE "\\.acr$" "" name ${file})
  string(APPEND body "    {\"${name}\", R\"acr(${text})acr\"},\n")
endforeach()
file(WRITE ${OUT}.new "// Generated from acrobat/models/*.acr by acrobat/cmake/embed_models.cmake; do not edit.
#include <string_view>
#include <utility>

namespace perfmem::acrobat {

std::string_view bundled_source(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kSources[] = {
${body}  };
  for (const auto& [model, text] : kSources)
    if (model == name) return text;
  return {};
}

}  // namespace perfmem::acrobat
")
file(COPY_FILE ${OUT}.new ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.new)
