// The proxy's metric helpers: latency buckets and the kinds of errors it sends.
#include "proxy/stats.hpp"

#include <gtest/gtest.h>

namespace pgfleet::proxy {
namespace {

TEST(LatencyBuckets, EachValueFallsBelowItsBucketsUpperBound) {
  EXPECT_EQ(latency_bucket(0), 0u);
  EXPECT_EQ(latency_bucket(15), 0u);
  EXPECT_EQ(latency_bucket(16), 1u);
  for (uint64_t us : {1ull, 17ull, 999ull, 1000000ull, 30000000ull}) {
    size_t i = latency_bucket(us);
    EXPECT_LT(us, latency_bucket_upper_us(i)) << us;
    if (i > 0) {
      EXPECT_GE(us, latency_bucket_upper_us(i - 1)) << us;
    }
  }
  EXPECT_EQ(latency_bucket(~uint64_t{0} >> 1), kLatencyBuckets - 1);  // the open-ended last bucket
}

TEST(LatencyBuckets, WaitTimesCountAndSum) {
  PoolStats s;
  s.add_wait_time(10);
  s.add_wait_time(2000);
  EXPECT_EQ(s.waits, 2u);
  EXPECT_EQ(s.wait_us_total, 2010u);
  EXPECT_EQ(s.wait_hist[latency_bucket(10)], 1u);
  EXPECT_EQ(s.wait_hist[latency_bucket(2000)], 1u);
}

TEST(LatencyBuckets, NinetyNinthPercentileIsTheUpperBoundOfItsBucket) {
  PoolStats s;
  EXPECT_EQ(s.wait_p99_us(), 0u) << "nothing counted";
  for (int i = 0; i < 99; ++i) s.add_wait_time(20);  // bucket [16, 32)
  s.add_wait_time(5000);                              // bucket [4096, 8192)
  EXPECT_EQ(s.wait_p99_us(), 32u) << "99 of 100 under 32 us";
  s.add_wait_time(5000);
  EXPECT_EQ(s.wait_p99_us(), 8192u) << "2 of 101 in the slow bucket";
  s.add_query_time(100);
  EXPECT_EQ(s.query_p99_us(), 128u);
}

TEST(ClassifyError, TheProxysOwnErrorsByKind) {
  EXPECT_EQ(classify_error("28P01", "password authentication failed for user \"x\""), ErrorKind::kAuth);
  EXPECT_EQ(classify_error("28000", "the pgfleet proxy requires TLS"), ErrorKind::kAuth);
  EXPECT_EQ(classify_error("08P01", "no server connection available within 10000 ms (pool a@b has 20 connections)"),
            ErrorKind::kWaitTimeout);
  EXPECT_EQ(classify_error("08P01", "invalid message length"), ErrorKind::kProtocol);
  EXPECT_EQ(classify_error("0A000", "unsupported frontend protocol 2.0"), ErrorKind::kProtocol);
  EXPECT_EQ(classify_error("53300", "sorry, too many clients already"), ErrorKind::kTooManyClients);
  EXPECT_EQ(classify_error("08006", "server connection lost"), ErrorKind::kServerLost);
  EXPECT_EQ(classify_error("57P03", "no replica is available"), ErrorKind::kNoReplica);
  EXPECT_EQ(classify_error("57P01", "terminating connection because the pgfleet proxy is shutting down"),
            ErrorKind::kTerminated);
  EXPECT_EQ(classify_error("57P05", "idle timeout"), ErrorKind::kTerminated);
  EXPECT_EQ(classify_error("54000", "terminating connection: it does not read its notifications (8 MB of notifications "
                                    "wait for it unread)"),
            ErrorKind::kSlowSubscriber);
  EXPECT_EQ(classify_error("25001", "transaction blocks are refused in statement mode"), ErrorKind::kOther);
  for (size_t i = 0; i < kErrorKinds; ++i) EXPECT_STRNE(to_string(static_cast<ErrorKind>(i)), "");
}

}  // namespace
}  // namespace pgfleet::proxy
