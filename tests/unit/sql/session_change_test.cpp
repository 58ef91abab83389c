#include "sql/session_change.hpp"

#include <gtest/gtest.h>

namespace pgfleet::sql {
namespace {

using Kind = SessionChange::Kind;

SessionChange set(std::string name, std::string value) { return {Kind::kSet, std::move(name), std::move(value)}; }
SessionChange reset(std::string name) { return {Kind::kReset, std::move(name), ""}; }

TEST(SessionChange, SetInEveryForm) {
  EXPECT_EQ(parse_session_change("SET search_path = a, b"), set("search_path", "a, b"));
  EXPECT_EQ(parse_session_change("set Statement_Timeout TO '5s';"), set("statement_timeout", "'5s'"));
  EXPECT_EQ(parse_session_change("  SET SESSION work_mem = '8MB'  "), set("work_mem", "'8MB'"));
  EXPECT_EQ(parse_session_change("SET myapp.tenant = 42"), set("myapp.tenant", "42"));
  EXPECT_EQ(parse_session_change("SET search_path TO DEFAULT"), reset("search_path"));
  EXPECT_EQ(parse_session_change("SET work_mem = default"), reset("work_mem"));
}

TEST(SessionChange, RoleTakesItsValueWithoutToOrEquals) {
  EXPECT_EQ(parse_session_change("SET ROLE app_reader"), set("role", "app_reader"));
  EXPECT_EQ(parse_session_change("SET ROLE 'app reader'"), set("role", "'app reader'"));
  EXPECT_EQ(parse_session_change("SET role = app_reader"), set("role", "app_reader"));
  EXPECT_EQ(parse_session_change("SET SESSION ROLE app_reader"), set("role", "app_reader"));
  EXPECT_EQ(parse_session_change("SET ROLE NONE"), reset("role"));
  EXPECT_EQ(parse_session_change("RESET ROLE"), reset("role"));
}

TEST(SessionChange, ResetDiscardDeallocate) {
  EXPECT_EQ(parse_session_change("RESET search_path"), reset("search_path"));
  EXPECT_EQ(parse_session_change("reset all"), (SessionChange{Kind::kResetAll, "", ""}));
  EXPECT_EQ(parse_session_change("DISCARD ALL"), (SessionChange{Kind::kDiscardAll, "", ""}));
  EXPECT_EQ(parse_session_change("DEALLOCATE ALL"), (SessionChange{Kind::kDeallocateAll, "", ""}));
  EXPECT_EQ(parse_session_change("DEALLOCATE PREPARE ALL"), (SessionChange{Kind::kDeallocateAll, "", ""}));
}

TEST(SessionChange, WhatEndsWithTheTransactionOrIsNotSessionStateIsIgnored) {
  for (const char* statement :
       {"SET LOCAL work_mem = '1MB'", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "SET CONSTRAINTS ALL DEFERRED",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", "SET SESSION AUTHORIZATION alice",
        "SET session_authorization = alice", "RESET SESSION AUTHORIZATION", "DISCARD PLANS", "DISCARD TEMP",
        "DEALLOCATE my_statement", "SELECT 1", "SET", "SET work_mem", "RESET", "SETTINGS", ""}) {
    EXPECT_EQ(parse_session_change(statement), std::nullopt) << statement;
  }
}

}  // namespace
}  // namespace pgfleet::sql
