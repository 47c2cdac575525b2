#include "perfmem/core/progress.h"

#include <unistd.h>

#include <algorithm>

namespace perfmem {

ProgressBar::ProgressBar(std::string label, int64_t total)
    : ProgressBar(std::move(label), total, stderr, isatty(fileno(stderr)) != 0) {}

ProgressBar::ProgressBar(std::string label, int64_t total, std::FILE* stream, bool enabled)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 0)),
      stream_(stream),
      enabled_(enabled && stream != nullptr) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::advance(int64_t steps) { set(done_ + steps); }

void ProgressBar::set(int64_t done) {
  done_ = std::clamp<int64_t>(done, 0, total_);
  draw(false);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  done_ = total_;
  draw(true);
  std::fputc('\n', stream_);
  std::fflush(stream_);
}

void ProgressBar::set_note(std::string note) { note_ = std::move(note); }

std::string ProgressBar::render(const std::string& label, int64_t done, int64_t total, int width,
                                const std::string& note) {
  std::string out = render(label, done, total, width);
  if (!note.empty()) out += " " + note;
  return out;
}

std::string ProgressBar::render(const std::string& label, int64_t done, int64_t total, int width) {
  int bar = std::max(width, 1);
  double fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 1.0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  int filled = static_cast<int>(fraction * bar + 0.5);
  std::string out = label + " [";
  out.append(static_cast<size_t>(filled), '#');
  out.append(static_cast<size_t>(bar - filled), ' ');
  out += "] " + std::to_string(static_cast<int>(fraction * 100.0)) + "% " + std::to_string(done) + "/" +
         std::to_string(total);
  return out;
}

void ProgressBar::draw(bool force) {
  if (!enabled_ || finished_ != force) return;
  auto now = std::chrono::steady_clock::now();
  // Redraw at most 20 times a second: a tight loop must not be slowed by terminal output.
  if (!force && now - last_draw_ < std::chrono::milliseconds(50) && done_ != total_) return;
  last_draw_ = now;
  std::fprintf(stream_, "\r%s", render(label_, done_, total_, 30, note_).c_str());
  std::fflush(stream_);
}

}  // namespace perfmem
