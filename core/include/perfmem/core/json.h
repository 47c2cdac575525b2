// JSON for reports and config files, on nlohmann::json.
//
//   auto cfg = perfmem::read_json_file("config.json");   // error names file, line and column
//   int d = 0;
//   PERFMEM_RETURN_IF_ERROR(perfmem::json_get(*cfg, "config.json", "d_model", &d));
//   perfmem::print_json(report);                          // pretty, to stdout
#pragma once

#include <iostream>
#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "perfmem/core/status.h"

namespace perfmem {

using Json = nlohmann::json;

Result<Json> parse_json(std::string_view text, std::string_view file_name);
Result<Json> read_json_file(const std::string& path);
void print_json(const Json& value, std::ostream& out = std::cout);

// Reads obj[key] into *out, with an error naming file, key and the expected type when the
// key is missing (unless optional) or has the wrong type.
template <typename T>
Status json_get(const Json& obj, std::string_view file, const std::string& key, T* out, bool optional = false) {
  if (!obj.is_object()) return input_error(file, "top level", "a JSON object", obj.type_name());
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (optional) return Status::Ok();
    return input_error(file, "key \"" + key + "\"", "the key to be present", "it missing");
  }
  try {
    *out = it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    return input_error(file, "key \"" + key + "\"", "a value of the right type", std::string("a ") + it->type_name());
  }
  return Status::Ok();
}

}  // namespace perfmem
