// The classifier's small JSON reader: values, escapes, document order, malformed input, deep nesting.
#include "sql/json_tree.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pgfleet::sql {
namespace {

TEST(JsonTree, ReadsValuesInDocumentOrder) {
  JsonTree t;
  ASSERT_TRUE(t.parse(R"( {"b": [1, -2, 3.5e2, "x"], "a": {"t": true, "f": false, "n": null}, "e": {}, "z": []} )"));
  auto root = t.root();
  ASSERT_TRUE(root.is_object());
  EXPECT_EQ(root.size(), 4u);
  std::vector<std::string> keys;
  for (auto member : root) keys.emplace_back(member.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"b", "a", "e", "z"}));
  auto b = root["b"];
  ASSERT_TRUE(b.is_array());
  EXPECT_EQ(b.size(), 4u);
  std::vector<std::int64_t> ints;
  for (auto v : b) ints.push_back(v.integer());
  EXPECT_EQ(ints, (std::vector<std::int64_t>{1, -2, 0, 0}));  // 3.5e2 is not an integer; "x" is not a number
  EXPECT_TRUE(root["a"]["t"].boolean());
  EXPECT_FALSE(root["a"]["f"].boolean());
  EXPECT_EQ(root["a"]["n"].type(), JsonTree::Type::Null);
  EXPECT_TRUE(root["e"].is_object());
  EXPECT_EQ(root["e"].size(), 0u);
  EXPECT_TRUE(root["z"].is_array());
  EXPECT_EQ(root["z"].begin(), root["z"].end());
}

TEST(JsonTree, AbsentValuesAnswerEmpty) {
  JsonTree t;
  ASSERT_TRUE(t.parse(R"({"a": "s"})"));
  auto missing = t.root()["nope"]["deeper"];
  EXPECT_FALSE(missing.present());
  EXPECT_EQ(missing.str(), "");
  EXPECT_EQ(missing.integer(), 0);
  EXPECT_FALSE(missing.boolean());
  EXPECT_EQ(missing.size(), 0u);
  EXPECT_EQ(missing.begin(), missing.end());
  EXPECT_EQ(t.root()["a"]["x"].present(), false);  // indexing a string
  EXPECT_EQ(t.root()["a"].str(), "s");
}

TEST(JsonTree, UnescapesStrings) {
  JsonTree t;
  ASSERT_TRUE(t.parse(R"(["we\"ird\\x", "\t\u0001\/", "\u043a\u043b\u044e\u0447", "\ud83d\ude00", "plain ключ"])"));
  std::vector<std::string> s;
  for (auto v : t.root()) s.emplace_back(v.str());
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0], "we\"ird\\x");
  EXPECT_EQ(s[1], "\t\x01/");
  EXPECT_EQ(s[2], "ключ");
  EXPECT_EQ(s[3], "\xF0\x9F\x98\x80");
  EXPECT_EQ(s[4], "plain ключ");
}

TEST(JsonTree, RejectsMalformedInput) {
  for (const char* bad : {"", " ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "\"unterminated",
                          "\"bad \\q escape\"", "tru", "[1]]", "{} {}", "[\"\\u12\"]", "{\"a\":}", "@"}) {
    JsonTree t;
    EXPECT_FALSE(t.parse(bad)) << bad;
  }
}

TEST(JsonTree, DeepNestingWithoutRecursion) {
  std::string s;
  for (int i = 0; i < 200000; ++i) s += "{\"a\":[";
  s += "42";
  for (int i = 0; i < 200000; ++i) s += "]}";
  JsonTree t;
  ASSERT_TRUE(t.parse(s));
  auto v = t.root();
  int depth = 0;
  while (v.is_object()) {
    v = *v["a"].begin();
    ++depth;
  }
  EXPECT_EQ(depth, 200000);
  EXPECT_EQ(v.integer(), 42);
}

}  // namespace
}  // namespace pgfleet::sql
