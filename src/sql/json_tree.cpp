#include "sql/json_tree.hpp"

#include <charconv>

namespace pgfleet::sql {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

void JsonTree::skip_blanks() {
  while (pos_ < in_.size() && is_blank(in_[pos_])) ++pos_;
}

// At an opening quote: reads the string, unescaping into owned storage only if it has escapes.
bool JsonTree::parse_string(std::string_view& out) {
  ++pos_;  // the quote
  std::size_t start = pos_;
  while (pos_ < in_.size() && in_[pos_] != '"' && in_[pos_] != '\\') {
    if (static_cast<unsigned char>(in_[pos_]) < 0x20) return false;
    ++pos_;
  }
  if (pos_ >= in_.size()) return false;
  if (in_[pos_] == '"') {
    out = in_.substr(start, pos_ - start);
    ++pos_;
    return true;
  }
  std::string& s = unescaped_.emplace_front(in_.substr(start, pos_ - start));
  while (pos_ < in_.size() && in_[pos_] != '"') {
    char c = in_[pos_++];
    if (static_cast<unsigned char>(c) < 0x20) return false;
    if (c != '\\') {
      s += c;
      continue;
    }
    if (pos_ >= in_.size()) return false;
    char e = in_[pos_++];
    switch (e) {
      case '"':
        s += '"';
        break;
      case '\\':
        s += '\\';
        break;
      case '/':
        s += '/';
        break;
      case 'b':
        s += '\b';
        break;
      case 'f':
        s += '\f';
        break;
      case 'n':
        s += '\n';
        break;
      case 'r':
        s += '\r';
        break;
      case 't':
        s += '\t';
        break;
      case 'u': {
        auto read4 = [&](std::uint32_t& v) {
          if (pos_ + 4 > in_.size()) return false;
          v = 0;
          for (int i = 0; i < 4; ++i) {
            int d = hex_digit(in_[pos_++]);
            if (d < 0) return false;
            v = v * 16 + static_cast<std::uint32_t>(d);
          }
          return true;
        };
        std::uint32_t cp = 0;
        if (!read4(cp)) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF && in_.substr(pos_, 2) == "\\u") {
          std::size_t save = pos_;
          pos_ += 2;
          std::uint32_t low = 0;
          if (read4(low) && low >= 0xDC00 && low <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else {
            pos_ = save;
          }
        }
        append_utf8(s, cp);
        break;
      }
      default:
        return false;
    }
  }
  if (pos_ >= in_.size()) return false;
  ++pos_;
  out = s;
  return true;
}

bool JsonTree::parse(std::string_view text) {
  nodes_.clear();
  unescaped_.clear();
  in_ = text;
  pos_ = 0;
  nodes_.reserve(text.size() / 8 + 4);  // libpg_query writes about one value per 9 bytes

  struct Open {
    std::uint32_t node;
    std::uint32_t last_child;
  };
  std::vector<Open> open;

  // Appends a new node as the next child of the innermost open container (or as the root).
  auto add = [&](Type type, std::string_view key) -> std::uint32_t {
    auto index = static_cast<std::uint32_t>(nodes_.size());
    Node& n = nodes_.emplace_back();
    n.type = type;
    n.key = key;
    if (!open.empty()) {
      Open& parent = open.back();
      if (parent.last_child == kNone) {
        nodes_[parent.node].first_child = index;
      } else {
        nodes_[parent.last_child].next_sibling = index;
      }
      parent.last_child = index;
      ++nodes_[parent.node].size;
    }
    return index;
  };

  bool expect_value = true;  // else: after a value, expecting ',' or a closing bracket
  for (;;) {
    if (!expect_value && open.empty()) break;  // the root value is complete
    skip_blanks();
    if (pos_ >= in_.size()) return false;
    if (!expect_value) {
      char c = in_[pos_];
      Type container = nodes_[open.back().node].type;
      if ((c == '}' && container == Type::Object) || (c == ']' && container == Type::Array)) {
        ++pos_;
        open.pop_back();
        continue;
      }
      if (c != ',') return false;
      ++pos_;
      expect_value = true;
      continue;
    }

    // A value, preceded by its member name inside an object.
    std::string_view key;
    if (!open.empty() && nodes_[open.back().node].type == Type::Object) {
      if (in_[pos_] == '}' && open.back().last_child == kNone) {  // empty object
        ++pos_;
        open.pop_back();
        expect_value = false;
        continue;
      }
      if (in_[pos_] != '"' || !parse_string(key)) return false;
      skip_blanks();
      if (pos_ >= in_.size() || in_[pos_] != ':') return false;
      ++pos_;
      skip_blanks();
      if (pos_ >= in_.size()) return false;
    } else if (!open.empty() && in_[pos_] == ']' && open.back().last_child == kNone) {  // empty array
      ++pos_;
      open.pop_back();
      expect_value = false;
      continue;
    }

    char c = in_[pos_];
    expect_value = false;
    if (c == '{' || c == '[') {
      ++pos_;
      std::uint32_t index = add(c == '{' ? Type::Object : Type::Array, key);
      open.push_back({index, kNone});
      expect_value = true;
    } else if (c == '"') {
      std::string_view s;
      if (!parse_string(s)) return false;
      nodes_[add(Type::String, key)].text = s;
    } else if (in_.substr(pos_, 4) == "true" || in_.substr(pos_, 5) == "false") {
      bool value = c == 't';
      pos_ += value ? 4 : 5;
      nodes_[add(Type::Bool, key)].boolean = value;
    } else if (in_.substr(pos_, 4) == "null") {
      pos_ += 4;
      add(Type::Null, key);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t start = pos_++;
      while (pos_ < in_.size() && ((in_[pos_] >= '0' && in_[pos_] <= '9') || in_[pos_] == '.' || in_[pos_] == 'e' ||
                                   in_[pos_] == 'E' || in_[pos_] == '+' || in_[pos_] == '-')) {
        ++pos_;
      }
      nodes_[add(Type::Number, key)].text = in_.substr(start, pos_ - start);
    } else {
      return false;
    }
  }
  skip_blanks();
  return pos_ == in_.size() && !nodes_.empty();
}

std::int64_t JsonTree::Value::integer() const {
  if (type() != Type::Number) return 0;
  std::string_view t = node().text;
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  return ec == std::errc() && end == t.data() + t.size() ? v : 0;
}

JsonTree::Value JsonTree::Value::operator[](std::string_view name) const {
  if (!is_object()) return {};
  for (Value member : *this) {
    if (member.key() == name) return member;
  }
  return {};
}

}  // namespace pgfleet::sql
