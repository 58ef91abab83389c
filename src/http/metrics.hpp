// Prometheus text exposition (format 0.0.4): families declared once with HELP and TYPE, samples
// grouped under their family whatever order they are added in.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgfleet::http {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Renders values the way Prometheus reads them: integers without exponent, +Inf, NaN.
std::string format_value(double value);
// Escapes \, " and newline in a label value.
std::string escape_label_value(std::string_view value);

class MetricsWriter {
 public:
  // type: counter | gauge | histogram | summary | untyped. Counters' names end in _total.
  // Declaring the same family again is harmless (the first HELP wins).
  void family(const std::string& name, std::string_view type, std::string_view help);
  // A sample of family `name`; `suffix` for histogram/summary parts ("_bucket", "_sum", "_count").
  void add(const std::string& name, const Labels& labels, double value, std::string_view suffix = {});
  // family + add for the common one-sample case.
  void gauge(const std::string& name, std::string_view help, double value, const Labels& labels = {});
  void counter(const std::string& name, std::string_view help, double value, const Labels& labels = {});
  // Labels added to every sample (e.g. cluster, node).
  void set_common_labels(Labels labels) { common_ = std::move(labels); }

  [[nodiscard]] std::string text() const;

 private:
  struct Family {
    std::string name, type, help;
    std::vector<std::string> lines;
  };
  Family& get(const std::string& name);
  std::deque<Family> families_;
  std::map<std::string, size_t> index_;
  Labels common_;
};

// The content type Prometheus expects for this format.
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace pgfleet::http
