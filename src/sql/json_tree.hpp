// A small read-only JSON tree for libpg_query's parse-tree output: one arena of nodes, strings as views into the input
// (unescaped copies only where the input has escapes), no recursion (parse trees nest deeply). About ten times faster
// than a general-purpose DOM on these inputs, which matters because the proxy classifies every statement.
// Internal to src/sql.
#pragma once

#include <cstdint>
#include <forward_list>
#include <string>
#include <string_view>
#include <vector>

namespace pgfleet::sql {

class JsonTree {
 public:
  enum class Type : std::uint8_t { Null, Bool, Number, String, Array, Object };

  // Parses `text`, which must outlive the tree (strings point into it). False if it is not one well-formed JSON value.
  bool parse(std::string_view text);

  class Value;
  // The top-level value (only after a successful parse).
  [[nodiscard]] Value root() const;

 private:
  static constexpr std::uint32_t kNone = 0;  // index 0 is the root, never anyone's child or sibling

  struct Node {
    Type type = Type::Null;
    bool boolean = false;
    std::string_view key;   // member name, for a value inside an object
    std::string_view text;  // a string's contents (unescaped), or a number's digits
    std::uint32_t first_child = kNone;
    std::uint32_t next_sibling = kNone;
    std::uint32_t size = 0;  // members or elements
  };

  bool parse_string(std::string_view& out);
  void skip_blanks();

  std::vector<Node> nodes_;
  std::forward_list<std::string> unescaped_;  // stable storage for strings that had escapes (rare)
  std::string_view in_;
  std::size_t pos_ = 0;
};

// A handle on one value of a tree (cheap to copy). A default-constructed or missing Value is "absent": every
// accessor then answers empty, false or zero.
class JsonTree::Value {
 public:
  Value() = default;

  [[nodiscard]] bool present() const { return tree_ != nullptr; }
  [[nodiscard]] Type type() const { return present() ? node().type : Type::Null; }
  [[nodiscard]] bool is_object() const { return type() == Type::Object; }
  [[nodiscard]] bool is_array() const { return type() == Type::Array; }
  [[nodiscard]] bool is_string() const { return type() == Type::String; }
  [[nodiscard]] bool is_structured() const { return is_object() || is_array(); }

  // The member name of a value inside an object.
  [[nodiscard]] std::string_view key() const { return present() ? node().key : std::string_view(); }
  // A string's contents; empty for anything else.
  [[nodiscard]] std::string_view str() const { return is_string() ? node().text : std::string_view(); }
  // true for JSON true; false for anything else.
  [[nodiscard]] bool boolean() const { return type() == Type::Bool && node().boolean; }
  // An integral number's value; 0 for anything else (or out of range).
  [[nodiscard]] std::int64_t integer() const;
  // Members of an object, or elements of an array.
  [[nodiscard]] std::uint32_t size() const { return is_structured() ? node().size : 0; }

  // The member named `name` of an object (absent if none, or not an object).
  [[nodiscard]] Value operator[](std::string_view name) const;

  // Iteration over the members or elements, in document order.
  class Iterator {
   public:
    Value operator*() const { return {tree_, index_}; }
    Iterator& operator++() {
      index_ = tree_->nodes_[index_].next_sibling;
      return *this;
    }
    bool operator==(const Iterator& other) const { return index_ == other.index_; }

   private:
    friend class Value;
    Iterator(const JsonTree* tree, std::uint32_t index) : tree_(tree), index_(index) {}
    const JsonTree* tree_;
    std::uint32_t index_;
  };
  [[nodiscard]] Iterator begin() const { return {tree_, is_structured() ? node().first_child : kNone}; }
  [[nodiscard]] Iterator end() const { return {tree_, kNone}; }

 private:
  friend class JsonTree;
  Value(const JsonTree* tree, std::uint32_t index) : tree_(tree), index_(index) {}
  [[nodiscard]] const Node& node() const { return tree_->nodes_[index_]; }

  const JsonTree* tree_ = nullptr;
  std::uint32_t index_ = 0;
};

inline JsonTree::Value JsonTree::root() const {
  return nodes_.empty() ? Value() : Value(this, 0);
}

}  // namespace pgfleet::sql
