// A tiny SVG writer for reports: line charts, grouped bar charts, and a raw canvas of
// rectangles (memory timelines).
//
//   perfmem::LineChart c{"throughput vs budget", "budget (GiB)", "requests/s"};
//   c.series.push_back({"lru", {{2, 1.1}, {4, 2.0}}});
//   c.series.push_back({"prefetch", {{2, 3.5}, {4, 4.1}}});
//   PERFMEM_RETURN_IF_ERROR(perfmem::write_text_file("plot.svg", perfmem::render_svg(c)));
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace perfmem {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  int width = 720, height = 420;
};

struct BarChart {
  std::string title, y_label;
  std::vector<std::string> categories;  // groups along x
  std::vector<Series> series;           // series[s].points[c].second = height of bar c
  int width = 720, height = 420;
};

// Free-form drawing in user coordinates mapped onto a plot area with axes.
class SvgCanvas {
 public:
  SvgCanvas(std::string title, std::string x_label, std::string y_label, double x_min, double x_max, double y_min,
            double y_max, int width = 900, int height = 500);
  // Rectangle in data coordinates; `tooltip` becomes an SVG <title>.
  void rect(double x0, double y0, double x1, double y1, const std::string& fill, const std::string& tooltip = {});
  void polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke);
  void legend_entry(const std::string& name, const std::string& color);
  std::string render() const;

 private:
  double px(double x) const;
  double py(double y) const;
  std::string title_, x_label_, y_label_;
  double x_min_, x_max_, y_min_, y_max_;
  int width_, height_;
  std::vector<std::string> body_;
  std::vector<std::pair<std::string, std::string>> legend_;
};

std::string render_svg(const LineChart& chart);
std::string render_svg(const BarChart& chart);
// A distinct colour for series i (cycles through a fixed palette).
std::string palette_color(size_t i);
// Escapes &, <, >, " for SVG/XML text.
std::string xml_escape(const std::string& text);

}  // namespace perfmem
