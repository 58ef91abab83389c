// `up --cascade`: the first replica streams from the primary, later ones from the first replica.
#include <string>

#include "harness.hpp"

namespace pgfleet::itest {
namespace {

using CascadeTest = PgfleetTest;

TEST_F(CascadeTest, ThirdNodeStreamsFromSecondAndReceivesPrimaryWrites) {
  ASSERT_NO_FATAL_FAILURE(start_cluster({"--cascade", "--replicas", "2"}));

  auto s = status_json();
  EXPECT_EQ(str(s, "leader"), "node1") << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node2"), "upstream"), "node1") << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node3"), "upstream"), "node2") << s.dump(2);
  EXPECT_EQ(str(node_of(s, "node3"), "state"), "streaming") << s.dump(2);

  // The servers agree: node1 sends to node2 only, node2 sends to node3.
  auto from_primary = sql(node_url("node1"), "SELECT application_name FROM pg_stat_replication ORDER BY 1");
  ASSERT_EQ(from_primary.size(), 1u);
  EXPECT_EQ(from_primary[0][0].value_or(""), "node2");
  auto from_node2 = sql(node_url("node2"), "SELECT application_name, state FROM pg_stat_replication ORDER BY 1");
  ASSERT_EQ(from_node2.size(), 1u);
  EXPECT_EQ(from_node2[0][0].value_or(""), "node3");
  EXPECT_EQ(from_node2[0][1].value_or(""), "streaming");

  std::string primary = url();
  sql(primary, "CREATE TABLE relay (id int PRIMARY KEY, note text)");
  sql(primary, "INSERT INTO relay VALUES (42, 'via node2')");
  std::string node3 = node_url("node3");
  std::string seen;
  EXPECT_TRUE(eventually(
      [&] {
        seen = sql_value(node3, "SELECT coalesce((SELECT note FROM relay WHERE id = 42), '')");
        return seen == "via node2";
      },
      10s, 50ms))
      << "row written on the primary never reached node3 (last read '" << seen << "')";
}

}  // namespace
}  // namespace pgfleet::itest
