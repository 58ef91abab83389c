// Prometheus text formatting.
#include "http/metrics.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace pgfleet::http {

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return fmt::format("{}", static_cast<int64_t>(value));
  return fmt::format("{}", value);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

MetricsWriter::Family& MetricsWriter::get(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::logic_error("metric family " + name + " used before it was declared");
  return families_[it->second];
}

void MetricsWriter::family(const std::string& name, std::string_view type, std::string_view help) {
  if (index_.count(name)) return;
  index_[name] = families_.size();
  families_.push_back(Family{name, std::string(type), std::string(help), {}});
}

void MetricsWriter::add(const std::string& name, const Labels& labels, double value, std::string_view suffix) {
  Family& f = get(name);
  std::string line = name + std::string(suffix);
  std::string label_text;
  auto append = [&](const std::pair<std::string, std::string>& l) {
    label_text += fmt::format("{}{}=\"{}\"", label_text.empty() ? "" : ",", l.first, escape_label_value(l.second));
  };
  for (const auto& l : common_) append(l);
  for (const auto& l : labels) append(l);
  if (!label_text.empty()) line += "{" + label_text + "}";
  line += " " + format_value(value);
  f.lines.push_back(std::move(line));
}

void MetricsWriter::gauge(const std::string& name, std::string_view help, double value, const Labels& labels) {
  family(name, "gauge", help);
  add(name, labels, value);
}

void MetricsWriter::counter(const std::string& name, std::string_view help, double value, const Labels& labels) {
  family(name, "counter", help);
  add(name, labels, value);
}

std::string MetricsWriter::text() const {
  std::string out;
  for (const auto& f : families_) {
    if (f.lines.empty()) continue;
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f.name, f.help, f.name, f.type);
    for (const auto& l : f.lines) out += l + "\n";
  }
  return out;
}

}  // namespace pgfleet::http
