// A one-line terminal progress bar on stderr, silent when stderr is not a terminal
// (so logs, pipes and CI output stay clean).
//
//   perfmem::ProgressBar bar("recording routes", n_requests);
//   for (...) { ...; bar.advance(); }
//   bar.finish();
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace perfmem {

class ProgressBar {
 public:
  // enabled: nullopt-like default decides from isatty(stderr); tests pass an explicit stream.
  ProgressBar(std::string label, int64_t total);
  ProgressBar(std::string label, int64_t total, std::FILE* stream, bool enabled);
  ~ProgressBar();

  void advance(int64_t steps = 1);
  void set(int64_t done);
  void finish();  // draws 100% and a newline once; also called by the destructor
  // Text drawn after the counts (e.g. "loss 0.41 hit 87%"), kept until changed.
  void set_note(std::string note);
  bool enabled() const { return enabled_; }

  // The text drawn for `done` of `total` in `width` columns: "label [#####     ] 50% 5/10".
  static std::string render(const std::string& label, int64_t done, int64_t total, int width);
  // The same, followed by " " + note when the note is not empty.
  static std::string render(const std::string& label, int64_t done, int64_t total, int width, const std::string& note);

 private:
  void draw(bool force);
  std::string label_;
  std::string note_;
  int64_t total_;
  int64_t done_ = 0;
  std::FILE* stream_;
  bool enabled_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace perfmem
