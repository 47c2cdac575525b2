#include "perfmem/core/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace perfmem {

namespace {
constexpr double kLeft = 80, kRight = 170, kTop = 40, kBottom = 60;  // margins in pixels

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Tick label: compact for large or small magnitudes.
std::string tick_label(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-2)) {
    std::snprintf(buf, sizeof buf, "%.2g", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", v);
  }
  return buf;
}
}  // namespace

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string palette_color(size_t i) {
  static const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return kPalette[i % (sizeof kPalette / sizeof kPalette[0])];
}

SvgCanvas::SvgCanvas(std::string title, std::string x_label, std::string y_label, double x_min, double x_max,
                     double y_min, double y_max, int width, int height)
    : title_(std::move(title)),
      x_label_(std::move(x_label)),
      y_label_(std::move(y_label)),
      x_min_(x_min),
      x_max_(x_max > x_min ? x_max : x_min + 1),
      y_min_(y_min),
      y_max_(y_max > y_min ? y_max : y_min + 1),
      width_(width),
      height_(height) {}

double SvgCanvas::px(double x) const { return kLeft + (x - x_min_) / (x_max_ - x_min_) * (width_ - kLeft - kRight); }
double SvgCanvas::py(double y) const {
  return height_ - kBottom - (y - y_min_) / (y_max_ - y_min_) * (height_ - kTop - kBottom);
}

void SvgCanvas::rect(double x0, double y0, double x1, double y1, const std::string& fill, const std::string& tooltip) {
  double left = std::min(px(x0), px(x1)), right = std::max(px(x0), px(x1));
  double top = std::min(py(y0), py(y1)), bottom = std::max(py(y0), py(y1));
  std::string r = "<rect x=\"" + fmt(left) + "\" y=\"" + fmt(top) + "\" width=\"" + fmt(std::max(right - left, 0.5)) +
                  "\" height=\"" + fmt(std::max(bottom - top, 0.5)) + "\" fill=\"" + fill + "\" fill-opacity=\"0.8\"";
  if (tooltip.empty()) {
    r += "/>";
  } else {
    r += "><title>" + xml_escape(tooltip) + "</title></rect>";
  }
  body_.push_back(std::move(r));
}

void SvgCanvas::polyline(const std::vector<std::pair<double, double>>& points, const std::string& stroke) {
  std::string p = "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + stroke + "\" points=\"";
  for (auto& [x, y] : points) p += fmt(px(x)) + "," + fmt(py(y)) + " ";
  p += "\"/>";
  body_.push_back(std::move(p));
  for (auto& [x, y] : points) {
    body_.push_back("<circle cx=\"" + fmt(px(x)) + "\" cy=\"" + fmt(py(y)) + "\" r=\"3\" fill=\"" + stroke + "\"/>");
  }
}

void SvgCanvas::legend_entry(const std::string& name, const std::string& color) { legend_.emplace_back(name, color); }

std::string SvgCanvas::render() const {
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width_ << "\" height=\"" << height_
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << width_ / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(title_)
    << "</text>\n";
  // Axes and five ticks on each.
  double x0 = px(x_min_), x1 = px(x_max_), y0 = py(y_min_), y1 = py(y_max_);
  s << "<line x1=\"" << fmt(x0) << "\" y1=\"" << fmt(y0) << "\" x2=\"" << fmt(x1) << "\" y2=\"" << fmt(y0)
    << "\" stroke=\"black\"/>\n";
  s << "<line x1=\"" << fmt(x0) << "\" y1=\"" << fmt(y0) << "\" x2=\"" << fmt(x0) << "\" y2=\"" << fmt(y1)
    << "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 5; ++i) {
    double xv = x_min_ + (x_max_ - x_min_) * i / 5.0;
    double yv = y_min_ + (y_max_ - y_min_) * i / 5.0;
    s << "<text x=\"" << fmt(px(xv)) << "\" y=\"" << fmt(y0 + 16) << "\" text-anchor=\"middle\">" << tick_label(xv)
      << "</text>\n";
    s << "<text x=\"" << fmt(x0 - 6) << "\" y=\"" << fmt(py(yv) + 4) << "\" text-anchor=\"end\">" << tick_label(yv)
      << "</text>\n";
    s << "<line x1=\"" << fmt(x0) << "\" y1=\"" << fmt(py(yv)) << "\" x2=\"" << fmt(x1) << "\" y2=\"" << fmt(py(yv))
      << "\" stroke=\"#ddd\"/>\n";
  }
  s << "<text x=\"" << fmt((x0 + x1) / 2) << "\" y=\"" << height_ - 15 << "\" text-anchor=\"middle\">"
    << xml_escape(x_label_) << "</text>\n";
  s << "<text transform=\"translate(18," << fmt((y0 + y1) / 2) << ") rotate(-90)\" text-anchor=\"middle\">"
    << xml_escape(y_label_) << "</text>\n";
  for (const auto& element : body_) s << element << "\n";
  for (size_t i = 0; i < legend_.size(); ++i) {
    double ly = kTop + 18.0 * static_cast<double>(i);
    s << "<rect x=\"" << fmt(width_ - kRight + 12) << "\" y=\"" << fmt(ly) << "\" width=\"12\" height=\"12\" fill=\""
      << legend_[i].second << "\"/>\n";
    s << "<text x=\"" << fmt(width_ - kRight + 30) << "\" y=\"" << fmt(ly + 10) << "\">" << xml_escape(legend_[i].first)
      << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

std::string render_svg(const LineChart& chart) {
  double xmin = std::numeric_limits<double>::max(), xmax = std::numeric_limits<double>::lowest();
  double ymax = 0, ymin = 0;
  for (const auto& series : chart.series) {
    for (auto& [x, y] : series.points) {
      xmin = std::min(xmin, x);
      xmax = std::max(xmax, x);
      ymin = std::min(ymin, y);
      ymax = std::max(ymax, y);
    }
  }
  if (xmin > xmax) {
    xmin = 0;
    xmax = 1;
  }
  SvgCanvas canvas(chart.title, chart.x_label, chart.y_label, xmin, xmax, ymin, ymax * 1.05, chart.width, chart.height);
  for (size_t i = 0; i < chart.series.size(); ++i) {
    canvas.polyline(chart.series[i].points, palette_color(i));
    canvas.legend_entry(chart.series[i].name, palette_color(i));
  }
  return canvas.render();
}

std::string render_svg(const BarChart& chart) {
  double ymax = 0;
  for (const auto& series : chart.series) {
    for (auto& point : series.points) ymax = std::max(ymax, point.second);
  }
  size_t groups = chart.categories.size();
  SvgCanvas canvas(chart.title, "", chart.y_label, 0, static_cast<double>(std::max<size_t>(groups, 1)), 0, ymax * 1.05,
                   chart.width, chart.height);
  size_t n = std::max<size_t>(chart.series.size(), 1);
  double bar = 0.8 / static_cast<double>(n);
  for (size_t s = 0; s < chart.series.size(); ++s) {
    const auto& points = chart.series[s].points;
    for (size_t c = 0; c < groups && c < points.size(); ++c) {
      double x = static_cast<double>(c) + 0.1 + bar * static_cast<double>(s);
      canvas.rect(x, 0, x + bar, points[c].second, palette_color(s),
                  chart.series[s].name + " / " + chart.categories[c] + ": " + tick_label(points[c].second));
    }
    canvas.legend_entry(chart.series[s].name, palette_color(s));
  }
  std::string svg = canvas.render();
  // Category names under each group (the canvas' numeric x ticks are not meaningful here).
  std::ostringstream labels;
  double plot_w = chart.width - kLeft - kRight;
  for (size_t c = 0; c < groups; ++c) {
    double x = kLeft + (static_cast<double>(c) + 0.5) / static_cast<double>(groups) * plot_w;
    labels << "<text x=\"" << fmt(x) << "\" y=\"" << chart.height - 30 << "\" text-anchor=\"middle\">"
           << xml_escape(chart.categories[c]) << "</text>\n";
  }
  svg.insert(svg.rfind("</svg>"), labels.str());
  return svg;
}

}  // namespace perfmem
