// Private to core: how error messages quote bytes that came from the user's input.
#pragma once

#include <string>
#include <string_view>

namespace perfmem::detail {

// Which bytes besides ASCII control characters are shown as \xNN.
enum class EscapeBytes {
  kControlOnly,    // text that is UTF-8 as far as anyone knows (names, keys, values read as text)
  kControlAndHigh  // text that may be a cut through anything (a parser quoting raw file bytes)
};

// Appends text to out with ASCII control characters (0x00-0x1f, 0x7f), and with kControlAndHigh
// every byte >= 0x80 too, written as \xNN. Messages often quote the input itself, and a crafted
// file could otherwise write terminal escape sequences, fake lines or invalid UTF-8 into them.
inline void append_visible(std::string& out, std::string_view text, EscapeBytes which) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    const bool escape = byte < 0x20 || byte == 0x7f || (which == EscapeBytes::kControlAndHigh && byte >= 0x80);
    if (escape) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    } else {
      out += ch;
    }
  }
}

}  // namespace perfmem::detail
