#include "perfmem/core/json.h"

#include "perfmem/core/io.h"
#include "visible_text.h"

namespace perfmem {

namespace {

// The parser's message quotes the bytes it last read, which in a corrupt or binary file can be
// invalid UTF-8 or terminal control codes.
std::string printable_ascii(std::string_view text) {
  std::string out;
  detail::append_visible(out, text, detail::EscapeBytes::kControlAndHigh);
  return out;
}

}  // namespace

Result<Json> parse_json(std::string_view text, std::string_view file_name) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is the 1-based offset of the failure; turn it into line:column for the user.
    size_t line = 1, column = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return input_error(file_name, "line " + std::to_string(line) + ", column " + std::to_string(column),
                       "well-formed JSON", printable_ascii(e.what()));
  }
}

Result<Json> read_json_file(const std::string& path) {
  auto text = read_text_file(path);
  if (!text) return text.status();
  return parse_json(*text, path);
}

void print_json(const Json& value, std::ostream& out) { out << value.dump(2) << "\n"; }

}  // namespace perfmem
