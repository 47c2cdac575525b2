#include "perfmem/core/status.h"

#include <cstring>

#include "visible_text.h"

namespace perfmem {

std::string_view status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidInput: return "invalid input";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kIoError: return "i/o error";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

Status Status::with_context(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

std::string describe_problem(std::string_view file, std::string_view place, std::string_view expected,
                             std::string_view found) {
  // The place and what was found often quote the input itself (a tensor name, a key, a token).
  using detail::EscapeBytes;
  std::string msg;
  msg.append(file).append(": ");
  detail::append_visible(msg, place, EscapeBytes::kControlOnly);
  msg.append(": expected ").append(expected);
  if (!found.empty()) {
    msg.append(", found ");
    detail::append_visible(msg, found, EscapeBytes::kControlOnly);
  }
  return msg;
}

Status input_error(std::string_view file, std::string_view place, std::string_view expected, std::string_view found) {
  return Status(StatusCode::kInvalidInput, describe_problem(file, place, expected, found));
}

Status unsupported_error(std::string_view file, std::string_view place, std::string_view what) {
  std::string msg;
  msg.append(file).append(": ").append(place).append(": ").append(what);
  return Status(StatusCode::kUnsupported, msg);
}

Status not_found_error(std::string_view file, std::string_view what) {
  std::string msg;
  msg.append(file).append(": ").append(what);
  return Status(StatusCode::kNotFound, msg);
}

Status io_error(std::string_view file, std::string_view action, int errno_value) {
  std::string msg;
  msg.append(file).append(": ").append(action).append(": ").append(std::strerror(errno_value));
  return Status(StatusCode::kIoError, msg);
}

void check_failed(const char* condition, const char* file, int line, const std::string& detail) {
  std::fprintf(stderr, "perfmem: internal invariant violated at %s:%d: %s%s%s\n", file, line, condition,
               detail.empty() ? "" : " — ", detail.c_str());
  std::abort();
}

}  // namespace perfmem
