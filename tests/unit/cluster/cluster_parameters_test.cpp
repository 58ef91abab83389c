// `pgfleet config set`'s assignments and the DCS key they are kept in.
#include "cluster/cluster_parameters.hpp"

#include <gtest/gtest.h>

namespace pgfleet::cluster {
namespace {

TEST(ClusterParameters, AssignmentsAreNameEqualsValue) {
  auto a = parse_parameter_assignment("work_mem=64MB");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->first, "work_mem");
  EXPECT_EQ(a->second, "64MB");
  auto spaced = parse_parameter_assignment(" Log_Min_Duration_Statement =250ms");
  ASSERT_TRUE(spaced) << spaced.error();
  EXPECT_EQ(spaced->first, "log_min_duration_statement");  // PostgreSQL's names are case-insensitive
  auto extension = parse_parameter_assignment("pg_stat_statements.max=10000");
  ASSERT_TRUE(extension);
  EXPECT_EQ(extension->first, "pg_stat_statements.max");
  auto with_equals = parse_parameter_assignment("search_path=\"$user\", public");
  ASSERT_TRUE(with_equals);
  EXPECT_EQ(with_equals->second, "\"$user\", public");
  EXPECT_TRUE(parse_parameter_assignment("wal_level=logical"));
}

TEST(ClusterParameters, WrongOrManagedAssignmentsAreRefusedWithAReason) {
  auto error_of = [](const char* text) {
    auto a = parse_parameter_assignment(text);
    return a ? std::string() : a.error();
  };
  EXPECT_EQ(error_of("work_mem"), "'work_mem' is not NAME=VALUE (e.g. work_mem=64MB)");
  EXPECT_EQ(error_of("work-mem=1"), "'work-mem' is not a PostgreSQL parameter name");
  EXPECT_EQ(error_of("=1"), "'' is not a PostgreSQL parameter name");
  EXPECT_EQ(error_of("work_mem="), "no value for work_mem (to remove it: pgfleet config unset work_mem)");
  EXPECT_EQ(error_of("work_mem=1\n2"), "the value of work_mem must be one line");
  EXPECT_EQ(error_of("port=6000"), "pgfleet sets port itself: each node's port is in pgfleet.yaml (nodes[].port) or node.yaml");
  EXPECT_NE(error_of("PRIMARY_CONNINFO=host=x").find("pgfleet sets primary_conninfo itself"), std::string::npos);
  EXPECT_NE(error_of("synchronous_standby_names=*").find("replication.sync"), std::string::npos);
  EXPECT_NE(error_of("archive_command=cp"), "");
  EXPECT_EQ(error_of("wal_level=minimal"), "wal_level must be replica or logical: the replicas stream WAL");
  EXPECT_EQ(managed_parameter_reason("work_mem"), "");
}

TEST(ClusterParameters, TheDcsKeyRoundTripsAndRejectsWhatItCannotUse) {
  PgParameters p{{"work_mem", "12MB"}, {"statement_timeout", "30s"}};
  auto back = parameters_from_json(parameters_to_json(p));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, p);
  EXPECT_TRUE(parameters_from_json("{}"));
  EXPECT_FALSE(parameters_from_json("[1]"));
  EXPECT_FALSE(parameters_from_json("{\"work_mem\": 12}"));
  EXPECT_FALSE(parameters_from_json("{\"Bad Name\": \"1\"}"));
  EXPECT_FALSE(parameters_from_json("not json"));
}

}  // namespace
}  // namespace pgfleet::cluster
