// Error handling shared by every perfmem component.
//
//   perfmem::Result<Model> load(const std::string& path) {
//     auto bytes = read_file(path);                 // Result<std::vector<uint8_t>>
//     if (!bytes) return bytes.status();
//     if (bytes->size() < 8)
//       return perfmem::input_error(path, "header", "at least 8 bytes",
//                                   std::to_string(bytes->size()) + " bytes");
//     ...
//   }
//
// Two kinds of checks, kept apart on purpose:
//  * bad input from a user (a file, a flag, a request) is a Status error returned to the caller,
//    whose message names the file, the place in it, what was expected and what was found;
//  * a broken internal invariant is a bug: PERFMEM_CHECK aborts with the condition and location,
//    in every build type, so it can never turn into silent garbage.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace perfmem {

enum class StatusCode {
  kOk = 0,
  kInvalidInput,  // the user's file, flag or request is malformed
  kNotFound,      // a file, tensor or key that should exist does not
  kUnsupported,   // well-formed, but uses something perfmem does not implement
  kIoError,       // the operating system refused a read, write or open
  kOutOfMemory,   // a budget or allocation cannot hold what is asked
  kInternal,      // reported rather than aborted, e.g. a failed worker thread
};

std::string_view status_code_name(StatusCode code);

// Outcome of an operation that returns no value. Cheap to copy when ok.
class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "invalid input: model.tflite: operator 3 (CONV_2D): expected ..., found ..."
  std::string to_string() const;

  // Prefixes context ("while loading shard 2: ...") and keeps the code.
  Status with_context(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Builds "FILE: PLACE: expected EXPECTED, found FOUND" (found may be empty). Control characters
// in PLACE and FOUND, which often quote the input, are shown as \xNN.
std::string describe_problem(std::string_view file, std::string_view place, std::string_view expected,
                             std::string_view found = {});

// User-input error naming the file, the place inside it and what was expected.
Status input_error(std::string_view file, std::string_view place, std::string_view expected,
                   std::string_view found = {});
Status unsupported_error(std::string_view file, std::string_view place, std::string_view what);
Status not_found_error(std::string_view file, std::string_view what);
// Error from a failed system call; appends strerror(errno_value).
Status io_error(std::string_view file, std::string_view action, int errno_value);

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}        // NOLINT: implicit
  Result(Status status) : state_(std::in_place_index<1>, std::move(status)) {  // NOLINT
    if (std::get<1>(state_).ok()) {
      std::fprintf(stderr, "perfmem: Result constructed from an ok Status\n");
      std::abort();
    }
  }

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // The error; an ok Status when a value is held.
  Status status() const { return ok() ? Status::Ok() : std::get<1>(state_); }

  T& value() & {
    check_has_value();
    return std::get<0>(state_);
  }
  const T& value() const& {
    check_has_value();
    return std::get<0>(state_);
  }
  T&& value() && {
    check_has_value();
    return std::get<0>(std::move(state_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check_has_value() const {
    if (!ok()) {
      std::fprintf(stderr, "perfmem: value() on an error Result: %s\n", std::get<1>(state_).to_string().c_str());
      std::abort();
    }
  }
  std::variant<T, Status> state_;
};

[[noreturn]] void check_failed(const char* condition, const char* file, int line, const std::string& detail);

}  // namespace perfmem

// Internal invariant: aborts with the condition, location and optional detail string.
#define PERFMEM_CHECK(cond, ...)                                                               \
  do {                                                                                         \
    if (!(cond)) ::perfmem::check_failed(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)

#define PERFMEM_CONCAT_INNER(a, b) a##b
#define PERFMEM_CONCAT(a, b) PERFMEM_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is an error.
#define PERFMEM_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::perfmem::Status perfmem_status_ = (expr);        \
    if (!perfmem_status_.ok()) return perfmem_status_; \
  } while (0)

// `PERFMEM_ASSIGN_OR_RETURN(auto x, make_x());` declares x from a Result or returns its error.
#define PERFMEM_ASSIGN_OR_RETURN(lhs, expr)                                                                       \
  auto PERFMEM_CONCAT(perfmem_result_, __LINE__) = (expr);                                                        \
  if (!PERFMEM_CONCAT(perfmem_result_, __LINE__).ok()) return PERFMEM_CONCAT(perfmem_result_, __LINE__).status(); \
  lhs = std::move(PERFMEM_CONCAT(perfmem_result_, __LINE__)).value()
