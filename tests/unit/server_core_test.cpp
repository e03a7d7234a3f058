#include <gtest/gtest.h>

#include "server/auth.hpp"
#include "server/config.hpp"
#include "server/signature_store.hpp"

using namespace pi;
using namespace pi::server;

namespace {
StoredRecord rec(std::uint8_t tag) {
  StoredRecord r;
  r.request_hash.fill(tag);
  return r;
}
}  // namespace

TEST(SignatureStore, StoresAndExpiresAfterTtl) {
  MemorySignatureStore s(10, std::chrono::seconds(60));
  auto t = SignatureStore::Clock::now();
  s.set_clock_for_test([&] { return t; });
  auto r = s.reserve();
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->commit("k1", rec(1)));
  EXPECT_FALSE(r->held());
  ASSERT_TRUE(s.get("k1"));
  EXPECT_EQ(s.get("k1")->request_hash[0], 1);
  t += std::chrono::seconds(59);
  EXPECT_TRUE(s.get("k1"));
  t += std::chrono::seconds(2);
  EXPECT_FALSE(s.get("k1"));
}

TEST(SignatureStore, NeverOverwritesAnExistingRecord) {
  MemorySignatureStore s(10, std::chrono::seconds(60));
  ASSERT_TRUE(s.reserve()->commit("id", rec(1)));
  auto r = s.reserve();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->commit("id", rec(2)));
  EXPECT_FALSE(r->commit("other", rec(3))) << "a reservation commits at most once";
  EXPECT_EQ(s.get("id")->request_hash[0], 1);
  EXPECT_EQ(s.size(), 1u);
}

TEST(SignatureStore, FullStoreRefusesInsteadOfEvictingLiveRecords) {
  MemorySignatureStore s(2, std::chrono::seconds(100));
  auto t = SignatureStore::Clock::now();
  s.set_clock_for_test([&] { return t; });
  ASSERT_TRUE(s.reserve()->commit("a", rec(1)));
  {
    auto held = s.reserve();  // held by an in-flight request
    ASSERT_TRUE(held);
    EXPECT_FALSE(s.reserve());  // 1 live + 1 reserved = capacity
  }                             // the request ends unsigned: its slot comes back
  auto r = s.reserve();
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->commit("b", rec(2)));
  EXPECT_FALSE(s.reserve());
  EXPECT_TRUE(s.get("a"));  // nothing was dropped
  EXPECT_TRUE(s.get("b"));
  EXPECT_GE(s.retry_after().count(), 100);
  t += std::chrono::seconds(101);  // both expire → room again
  EXPECT_TRUE(s.reserve());
  EXPECT_EQ(s.size(), 0u);
}

TEST(SignatureStore, MovedReservationsReleaseExactlyOnce) {
  MemorySignatureStore s(1, std::chrono::seconds(100));
  {
    auto r = s.reserve();
    ASSERT_TRUE(r);
    SignatureStore::Reservation moved = std::move(*r);
    EXPECT_FALSE(r->held());
    EXPECT_TRUE(moved.held());
    EXPECT_FALSE(s.reserve());
  }
  auto again = s.reserve();
  ASSERT_TRUE(again) << "the slot came back once";
  EXPECT_FALSE(s.reserve()) << "and only once";
}

TEST(TokenAuth, DisabledMeansAnonymousOwner) {
  TokenAuth a({});
  EXPECT_FALSE(a.enabled());
  EXPECT_EQ(a.authenticate("").value(), "");
}

TEST(TokenAuth, ChecksBearerTokensAndNamesOwners) {
  TokenAuth a({"alpha", "beta"});
  EXPECT_TRUE(a.enabled());
  auto o1 = a.authenticate("Bearer alpha");
  auto o2 = a.authenticate("bearer beta");
  ASSERT_TRUE(o1);
  ASSERT_TRUE(o2);
  EXPECT_NE(*o1, *o2);
  EXPECT_EQ(o1->size(), 16u);
  EXPECT_FALSE(a.authenticate("Bearer alph"));
  EXPECT_FALSE(a.authenticate("Bearer alphaa"));
  EXPECT_FALSE(a.authenticate("Basic alpha"));
  EXPECT_FALSE(a.authenticate(""));
  EXPECT_FALSE(a.authenticate("Bearer "));
}

TEST(Config, BackendUrls) {
  auto b = parse_backend_url("http://vllm:8000");
  EXPECT_EQ(b.host, "vllm");
  EXPECT_EQ(b.port, "8000");
  EXPECT_EQ(b.prefix, "");
  b = parse_backend_url("http://127.0.0.1/engine/");
  EXPECT_EQ(b.port, "80");
  EXPECT_EQ(b.prefix, "/engine");
  b = parse_backend_url("http://[::1]:9000");
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, "9000");
  EXPECT_THROW(parse_backend_url("https://x:1"), std::invalid_argument);
  EXPECT_THROW(parse_backend_url("ftp://x"), std::invalid_argument);
  EXPECT_THROW(parse_backend_url("http://x:notaport"), std::invalid_argument);
  EXPECT_THROW(parse_backend_url("http://x:70000"), std::invalid_argument);
}

TEST(Config, ListenAddresses) {
  auto l = parse_listen("0.0.0.0:8000");
  EXPECT_EQ(l.host, "0.0.0.0");
  EXPECT_EQ(l.port, 8000);
  l = parse_listen(":9");
  EXPECT_EQ(l.host, "0.0.0.0");
  l = parse_listen("[::1]:0");
  EXPECT_EQ(l.host, "::1");
  EXPECT_EQ(l.port, 0);
  EXPECT_THROW(parse_listen("nohost"), std::invalid_argument);
  EXPECT_THROW(parse_listen("h:99999"), std::invalid_argument);
}
