#include "sql/session_change.hpp"

#include <gtest/gtest.h>

#include "sql/listen_statement.hpp"

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

TEST(SessionChange, CommentsAroundTheStatementAreSkipped) {
  // ORMs and sqlcommenter put comments before or after statements; PostgreSQL comments nest.
  EXPECT_EQ(parse_session_change("/* app=web */ SET search_path = a"), set("search_path", "a"));
  EXPECT_EQ(parse_session_change("-- why\nSET /* x /* nested */ y */ work_mem TO '8MB'"), set("work_mem", "'8MB'"));
  EXPECT_EQ(parse_session_change("SET work_mem = /* c */ '8MB'"), set("work_mem", "'8MB'"));
  EXPECT_EQ(parse_session_change("\f\vRESET work_mem"), reset("work_mem"));
  EXPECT_EQ(parse_session_change("/* not closed SET work_mem = 1"), std::nullopt);
}

TEST(SessionChange, SetSchemaIsTheSearchPath) {
  EXPECT_EQ(parse_session_change("SET SCHEMA 'app'"), set("search_path", "'app'"));
  EXPECT_EQ(parse_session_change("SET SCHEMA app"), std::nullopt);  // not valid SQL: the server says so
}

TEST(SplitStatements, SemicolonsInsideLiteralsQuotesAndCommentsDoNotSplit) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(split_statements("SET a = 1; SET b = 2"), (V{"SET a = 1", " SET b = 2"}));
  EXPECT_EQ(split_statements("SELECT ';'';'; x"), (V{"SELECT ';'';'", " x"}));
  EXPECT_EQ(split_statements("SELECT \";\"; x"), (V{"SELECT \";\"", " x"}));
  // An escape string: \' is a quote inside it (in a standard string the backslash is a character).
  EXPECT_EQ(split_statements("SET x = E'a\\';b'; y"), (V{"SET x = E'a\\';b'", " y"}));
  EXPECT_EQ(split_statements("SELECT 'a\\'; y"), (V{"SELECT 'a\\'", " y"}));
  EXPECT_EQ(split_statements("SELECT $q$;$q$; SELECT $$;$$; x"), (V{"SELECT $q$;$q$", " SELECT $$;$$", " x"}));
  EXPECT_EQ(split_statements("SELECT $1; SELECT a$b$; x"), (V{"SELECT $1", " SELECT a$b$", " x"}));
  EXPECT_EQ(split_statements("SELECT 1 /* ; /* ; */ ; */; x -- ;\n;y"), (V{"SELECT 1 /* ; /* ; */ ; */", " x -- ;\n", "y"}));
  EXPECT_EQ(split_statements("SELECT 'open; x"), (V{"SELECT 'open; x"}));
  EXPECT_EQ(split_statements(""), V{});
}

TEST(MentionsSessionVerb, FindsEveryStatementThatMayChangeTheSession) {
  EXPECT_TRUE(mentions_session_verb("SET x = 1"));
  EXPECT_TRUE(mentions_session_verb("SELECT 1; /* c */ reset all"));
  EXPECT_TRUE(mentions_session_verb("BEGIN;\nLISTEN jobs; COMMIT"));
  EXPECT_TRUE(mentions_session_verb("\f-- c\nDISCARD ALL"));
  EXPECT_FALSE(mentions_session_verb("SELECT settings FROM t"));
  EXPECT_FALSE(mentions_session_verb("UPDATE t SET x = 1"));
  EXPECT_FALSE(mentions_session_verb("SELECT 1 /* SET x = 1"));
  EXPECT_EQ(may_mention_session_verb("/* a comment still coming", false), std::nullopt);
  EXPECT_EQ(may_mention_session_verb("SE", false), std::nullopt);
  EXPECT_EQ(may_mention_session_verb("SELECT abalance FROM", false), false);
  EXPECT_EQ(may_mention_session_verb("/* c */ set x = 1", false), true);
  EXPECT_EQ(may_mention_session_verb("SE", true), false);
}

TEST(MayCommitTransaction, OnlyAStatementEndingTheBlockWithACommitCounts) {
  for (const char* commits : {"COMMIT", "commit;", "END", "end transaction", "COMMIT AND CHAIN", "PREPARE TRANSACTION 'x'",
                              "/* app */ COMMIT", "-- done\nCOMMIT", "INSERT INTO t VALUES (1); COMMIT",
                              "SELECT 1;END", "COMMIT PREPARED 'x'"}) {
    EXPECT_TRUE(may_commit_transaction(commits)) << commits;
  }
  for (const char* not_commit : {"INSERT INTO t VALUES (1)", "SELECT 'COMMIT'", "SELECT 1; SELECT 'x; COMMIT'",
                                 "ROLLBACK", "ABORT", "SAVEPOINT a; ROLLBACK TO a", "PREPARE q AS SELECT 1",
                                 "UPDATE t SET note = $$; COMMIT$$", "SELECT endpoint FROM t", "-- COMMIT", "",
                                 "committed_rows()", "/* COMMIT */ SELECT 1"}) {
    EXPECT_FALSE(may_commit_transaction(not_commit)) << not_commit;
  }
}

TEST(ParseListen, ReadsTheChannelAsTheServerNamesIt) {
  EXPECT_EQ(parse_listen("LISTEN jobs"), (ListenRequest{true, "jobs"}));
  EXPECT_EQ(parse_listen("listen Jobs;"), (ListenRequest{true, "jobs"}));
  EXPECT_EQ(parse_listen("LISTEN \"Jobs\"\"x\""), (ListenRequest{true, "Jobs\"x"}));
  EXPECT_EQ(parse_listen("/* worker */ LISTEN jobs -- the queue"), (ListenRequest{true, "jobs"}));
  EXPECT_EQ(parse_listen("UNLISTEN jobs"), (ListenRequest{false, "jobs"}));
  EXPECT_EQ(parse_listen("UNLISTEN *"), (ListenRequest{false, kAllChannels}));
  EXPECT_EQ(parse_listen("UNLISTEN \"*\""), (ListenRequest{false, "*"}));  // a channel named *
  EXPECT_EQ(parse_listen("LISTEN U&\"d\\0061t\""), (ListenRequest{true, "dat"}));
  // Identifiers are truncated to 63 bytes, and notifications carry the truncated name.
  EXPECT_EQ(parse_listen("LISTEN " + std::string(70, 'c')), (ListenRequest{true, std::string(63, 'c')}));
  for (const char* other : {"LISTEN select", "LISTEN a b", "LISTEN \"\"", "LISTEN a; LISTEN b", "LISTEN",
                            "SELECT 1", "UPDATE t SET x = 1", "listening"}) {
    EXPECT_EQ(parse_listen(other), std::nullopt) << other;
  }
}

}  // namespace
}  // namespace pgfleet::sql
