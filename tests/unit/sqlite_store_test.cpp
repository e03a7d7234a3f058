// The durable signature store: same semantics as the memory store (TTL, capacity, no overwrite),
// plus what a file adds (reopen keeps records, group commit, clear errors for bad files).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <thread>
#include <vector>

#include "server/config.hpp"
#include "server/response_signer.hpp"
#include "server/sqlite_store.hpp"
#include "test_support.hpp"

using namespace pi;
using namespace pi::server;
using pi::testsupport::TempDir;

namespace {

StoredRecord rec(std::uint8_t tag) {
  StoredRecord r;
  r.request_hash.fill(tag);
  r.response_hash.fill(static_cast<std::uint8_t>(tag + 1));
  r.instance_id = "instance-" + std::to_string(tag);
  return r;
}

bool same(const StoredRecord& a, const StoredRecord& b) {
  return a.request_hash == b.request_hash && a.response_hash == b.response_hash && a.instance_id == b.instance_id;
}

// A wall clock the test moves.
struct FakeClock {
  std::atomic<std::int64_t> ms{1'700'000'000'000};
  std::function<std::chrono::system_clock::time_point()> fn() {
    return [this] { return std::chrono::system_clock::time_point(std::chrono::milliseconds(ms.load())); };
  }
  void advance(std::chrono::milliseconds d) { ms += d.count(); }
};

SqliteStoreOptions opts(const std::string& path, std::size_t cap = 100,
                        std::chrono::seconds ttl = std::chrono::seconds(60)) {
  SqliteStoreOptions o;
  o.path = path;
  o.capacity = cap;
  o.ttl = ttl;
  o.signer = "test-signer";
  return o;
}

}  // namespace

TEST(SqliteStore, CommitsGetsAndKeepsRecordsAcrossReopen) {
  TempDir d;
  const auto path = d.file("sig.db");
  {
    SqliteSignatureStore s(opts(path));
    EXPECT_EQ(s.describe(), "sqlite:" + path);
    for (std::uint8_t i = 0; i < 3; ++i) ASSERT_TRUE(s.reserve()->commit("k" + std::to_string(i), rec(i)));
    EXPECT_EQ(s.size(), 3u);
    auto got = s.get("k1");
    ASSERT_TRUE(got);
    EXPECT_TRUE(same(*got, rec(1)));
    EXPECT_FALSE(s.get("nope"));
  }
  SqliteSignatureStore s(opts(path));
  EXPECT_EQ(s.size(), 3u) << "live records are counted at open";
  for (std::uint8_t i = 0; i < 3; ++i) {
    auto got = s.get("k" + std::to_string(i));
    ASSERT_TRUE(got) << i;
    EXPECT_TRUE(same(*got, rec(i)));
  }
}

TEST(SqliteStore, KeysAreBinaryAndNeverOverwritten) {
  TempDir d;
  SqliteSignatureStore s(opts(d.file("sig.db")));
  const std::string key = record_key(std::string("tok\0en", 6), "chatcmpl-1");
  ASSERT_TRUE(s.reserve()->commit(key, rec(1)));
  auto r = s.reserve();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->commit(key, rec(2)));
  EXPECT_FALSE(r->commit("other", rec(3))) << "a reservation commits at most once";
  EXPECT_TRUE(same(*s.get(key), rec(1)));
  EXPECT_FALSE(s.get(record_key("token", "chatcmpl-1"))) << "a different owner does not see the record";
  EXPECT_EQ(s.size(), 1u);
}

TEST(SqliteStore, ExpiredRecordsAreNeverServedAndArePurged) {
  TempDir d;
  FakeClock clock;
  auto o = opts(d.file("sig.db"), 100, std::chrono::seconds(60));
  o.clock = clock.fn();
  {
    SqliteSignatureStore s(o);
    ASSERT_TRUE(s.reserve()->commit("old", rec(1)));
    clock.advance(std::chrono::seconds(30));
    ASSERT_TRUE(s.reserve()->commit("new", rec(2)));
    clock.advance(std::chrono::seconds(29));
    EXPECT_TRUE(s.get("old"));
    clock.advance(std::chrono::seconds(1));  // "old" is exactly 60 s old
    EXPECT_FALSE(s.get("old")) << "never served after its TTL, purged or not";
    EXPECT_TRUE(s.get("new"));
    EXPECT_EQ(s.size(), 1u);
    s.purge_now();
    EXPECT_EQ(s.stats().purged, 1u);
    s.purge_now();
    EXPECT_EQ(s.stats().purged, 1u);
  }
  clock.advance(std::chrono::seconds(31));  // "new" expired while the store was closed
  SqliteSignatureStore s(o);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s.get("new"));
  EXPECT_EQ(s.stats().purged, 1u) << "expired rows are deleted at open";
}

TEST(SqliteStore, FullStoreRefusesWithRetryAfterInsteadOfEvicting) {
  TempDir d;
  FakeClock clock;
  auto o = opts(d.file("sig.db"), 2, std::chrono::seconds(100));
  o.clock = clock.fn();
  SqliteSignatureStore s(o);
  ASSERT_TRUE(s.reserve()->commit("a", rec(1)));
  clock.advance(std::chrono::seconds(10));
  {
    auto held = s.reserve();  // an in-flight request
    ASSERT_TRUE(held);
    EXPECT_FALSE(s.reserve()) << "1 live + 1 reserved = capacity";
  }
  ASSERT_TRUE(s.reserve()->commit("b", rec(2)));
  EXPECT_FALSE(s.reserve());
  EXPECT_EQ(s.retry_after(), std::chrono::seconds(90)) << "until the oldest record expires";
  EXPECT_TRUE(s.get("a")) << "no live record is evicted";
  clock.advance(std::chrono::seconds(90));
  EXPECT_TRUE(s.reserve()) << "a slot frees when the oldest record expires";
  EXPECT_EQ(s.size(), 1u);
}

TEST(SqliteStore, CapacityCountsRecordsAlreadyInTheFile) {
  TempDir d;
  const auto path = d.file("sig.db");
  {
    SqliteSignatureStore s(opts(path, 2));
    ASSERT_TRUE(s.reserve()->commit("a", rec(1)));
    ASSERT_TRUE(s.reserve()->commit("b", rec(2)));
  }
  SqliteSignatureStore s(opts(path, 2));
  EXPECT_FALSE(s.reserve()) << "the records of before the restart still hold their slots";
  EXPECT_GE(s.retry_after(), std::chrono::seconds(59));
}

TEST(SqliteStore, ConcurrentCommitsShareTransactions) {
  TempDir d;
  SqliteSignatureStore s(opts(d.file("sig.db"), 100000));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<int> stored{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i)
        if (s.reserve()->commit("t" + std::to_string(t) + "-" + std::to_string(i), rec(static_cast<std::uint8_t>(i))))
          stored++;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(stored.load(), kThreads * kPerThread);
  const auto st = s.stats();
  EXPECT_EQ(st.records, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_LT(st.transactions, st.records) << "blocking committers from 8 threads share fsyncs";
  // Commits handed over without waiting: far fewer transactions than records.
  std::atomic<int> done{0};
  const auto before = s.stats().transactions;
  for (int i = 0; i < 1000; ++i)
    s.reserve()->commit_async("async-" + std::to_string(i), rec(1), [&](CommitResult r) {
      if (r == CommitResult::Stored) done++;
    });
  s.flush();
  EXPECT_EQ(done.load(), 1000);
  EXPECT_LT(s.stats().transactions - before, 100u);
  EXPECT_EQ(s.size(), static_cast<std::size_t>(kThreads * kPerThread + 1000));
}

TEST(SqliteStore, ResponseSignerAwaitsTheDurableCommitOnItsOwnThread) {
  TempDir d;
  SqliteSignatureStore s(opts(d.file("sig.db")));
  const std::string instance = "0123456789abcdef0123456789abcdef01234567";
  boost::asio::io_context ioc;
  const auto loop_thread = std::this_thread::get_id();
  auto task = [&]() -> boost::asio::awaitable<std::pair<SignResult, bool>> {
    auto signer = ResponseSigner::begin(s, instance, "owner", R"({"model":"m"})");
    auto r = co_await signer->sign_body(R"({"id":"chatcmpl-7","choices":[]})");
    co_return std::pair{r, std::this_thread::get_id() == loop_thread};
  };
  auto fut = boost::asio::co_spawn(ioc, task(), boost::asio::use_future);
  ioc.run();
  auto [r, on_loop] = fut.get();
  EXPECT_EQ(r.outcome, SignOutcome::Signed);
  EXPECT_EQ(r.id, "chatcmpl-7");
  EXPECT_TRUE(on_loop) << "the coroutine resumes on its executor, not on the store's writer thread";
  auto got = s.get(record_key("owner", "chatcmpl-7"));
  ASSERT_TRUE(got) << "the record is there as soon as the commit has completed";
  EXPECT_EQ(got->request_hash, crypto::sha256(R"({"model":"m"})"));
  EXPECT_EQ(got->response_hash, crypto::sha256(R"({"id":"chatcmpl-7","choices":[]})"));
  EXPECT_EQ(got->instance_id, instance) << "the record names the instance that served the answer";
}

TEST(SqliteStore, RecordsOfAnotherSignerAreDeletedAtOpen) {
  TempDir d;
  const auto path = d.file("sig.db");
  {
    SqliteSignatureStore s(opts(path));
    ASSERT_TRUE(s.reserve()->commit("a", rec(1)));
  }
  auto o = opts(path);
  o.signer = "other-keys";
  SqliteSignatureStore s(o);
  EXPECT_EQ(s.stats().discarded_at_open, 1u);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s.get("a")) << "served with these keys' addresses it would not verify";
}

TEST(SqliteStore, BadFilesAreClearErrors) {
  TempDir d;
  auto expect_error = [](const std::string& path, const std::string& part) {
    try {
      SqliteSignatureStore s(opts(path));
      ADD_FAILURE() << "opened " << path;
    } catch (const StoreError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "the message names the file: " << e.what();
    }
  };
  expect_error(d.write("garbage.db", std::string(8192, 'x')), "not a database");
  expect_error(d.file("no/such/dir/sig.db"), "cannot");
  {
    SqliteSignatureStore first(opts(d.file("busy.db")));
    expect_error(d.file("busy.db"), "in use by another process");
  }
  SqliteSignatureStore again(opts(d.file("busy.db")));  // the lock goes with the store
  if (::geteuid() != 0) {                               // root writes anywhere
    ::mkdir(d.file("ro").c_str(), 0500);
    expect_error(d.file("ro/sig.db"), "cannot");
  }
  EXPECT_THROW(SqliteSignatureStore(opts("")), StoreError);
}

TEST(StoreSpec, ParsesMemoryAndSqlite) {
  EXPECT_EQ(parse_store_spec("memory").kind, StoreSpec::Kind::Memory);
  auto s = parse_store_spec("sqlite:/var/lib/pi/signatures.db");
  EXPECT_EQ(s.kind, StoreSpec::Kind::Sqlite);
  EXPECT_EQ(s.path, "/var/lib/pi/signatures.db");
  EXPECT_EQ(s.describe(), "sqlite:/var/lib/pi/signatures.db");
  EXPECT_THROW(parse_store_spec("sqlite:"), std::invalid_argument);
  EXPECT_THROW(parse_store_spec("postgres://h:1"), std::invalid_argument);
  EXPECT_THROW(parse_store_spec(""), std::invalid_argument);
}
