// The Redis signature store against a real redis-server (Debian's; started by each test on a free port):
// what one replica commits another serves, NX keeps the first record, TTL is Redis's, and what happens when
// Redis is killed, frozen or refuses the password: answers keep their records (kept in memory, served from
// there, written to Redis when it is back), fetches that cannot be answered are "unavailable", not "absent".
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "server/config.hpp"
#include "server/redis_store.hpp"
#include "server/response_signer.hpp"
#include "test_support.hpp"

using namespace pi;
using namespace pi::server;
using pi::testsupport::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr const char* kRedisServer = "/usr/bin/redis-server";

unsigned short free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

bool port_open(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// In a forked child: redis-server's start-up banner and warnings go nowhere.
void quiet_child() {
  const int devnull = ::open("/dev/null", O_WRONLY);
  if (devnull >= 0) {
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
  }
}

// A redis-server in a temporary directory; AOF with fsync on every write when `aof`.
class RedisServer {
 public:
  explicit RedisServer(bool aof = false, std::string password = {})
      : port_(free_port()), aof_(aof), password_(std::move(password)) {
    start();
  }
  ~RedisServer() { kill_now(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  void start() {
    std::vector<std::string> args = {kRedisServer,
                                     "--port",
                                     std::to_string(port_),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     dir_.path,
                                     "--save",
                                     "",
                                     "--appendonly",
                                     aof_ ? "yes" : "no",
                                     "--appendfsync",
                                     "always",
                                     "--loglevel",
                                     "warning"};
    if (!password_.empty()) {
      args.emplace_back("--requirepass");
      args.push_back(password_);
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      quiet_child();
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kRedisServer, argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !port_open(port_); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(port_open(port_)) << "redis-server did not start";
  }
  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void freeze() { ::kill(pid_, SIGSTOP); }
  void thaw() { ::kill(pid_, SIGCONT); }
  unsigned short port() const { return port_; }

 private:
  TempDir dir_;
  unsigned short port_;
  bool aof_;
  std::string password_;
  pid_t pid_ = -1;
};

RedisStoreOptions opts(unsigned short port, std::string password = {}) {
  RedisStoreOptions o;
  o.endpoint.port = port;
  o.endpoint.password = std::move(password);
  o.capacity = 1000;
  o.ttl = 60s;
  o.key_prefix = "pi:sig:test:";
  o.command_timeout = 300ms;
  o.connect_wait = 2s;
  o.reconnect_min = 20ms;
  o.reconnect_max = 100ms;
  return o;
}

StoredRecord rec(std::uint8_t tag) {
  StoredRecord r;
  r.request_hash.fill(tag);
  r.response_hash.fill(static_cast<std::uint8_t>(tag + 1));
  r.instance_id = "replica-" + std::to_string(tag);
  return r;
}

bool same(const std::optional<StoredRecord>& a, const StoredRecord& b) {
  return a && a->request_hash == b.request_hash && a->response_hash == b.response_hash &&
         a->instance_id == b.instance_id;
}

GetResult::Status fetch_status(RedisSignatureStore& s, const std::string& key) {
  std::promise<GetResult::Status> p;
  auto f = p.get_future();
  s.get_async(key, [&p](GetResult r) { p.set_value(r.status); });
  return f.get();
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds within = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

}  // namespace

TEST(RedisStore, WhatOneReplicaCommitsAnotherServes) {
  RedisServer redis;
  RedisSignatureStore a(opts(redis.port()));
  RedisSignatureStore b(opts(redis.port()));
  ASSERT_TRUE(a.stats().connected);
  ASSERT_TRUE(a.reserve()->commit(record_key("owner", "chatcmpl-1"), rec(1)));
  EXPECT_TRUE(same(b.get(record_key("owner", "chatcmpl-1")), rec(1))) << "the other replica serves it at once";
  EXPECT_FALSE(b.get(record_key("other", "chatcmpl-1"))) << "another owner (token) does not see it";
  EXPECT_EQ(fetch_status(b, record_key("owner", "missing")), GetResult::Status::NotFound);

  auto r = b.reserve();
  EXPECT_FALSE(r->commit(record_key("owner", "chatcmpl-1"), rec(9))) << "NX: the first record of an id stays";
  EXPECT_TRUE(same(a.get(record_key("owner", "chatcmpl-1")), rec(1)));
  EXPECT_EQ(a.size(), 1u) << "each replica counts the records it wrote";
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(a.stats().written, 1u);
  EXPECT_EQ(b.stats().collisions, 1u);

  auto o = opts(redis.port());
  o.key_prefix = "pi:sig:other-fleet:";
  RedisSignatureStore c(o);
  EXPECT_FALSE(c.get(record_key("owner", "chatcmpl-1"))) << "another signing address does not see the fleet's records";
}

TEST(RedisStore, RecordsExpireWithRedisTtlAndCapacityHolds) {
  RedisServer redis;
  auto o = opts(redis.port());
  o.ttl = 1s;
  o.capacity = 2;
  RedisSignatureStore s(o);
  ASSERT_TRUE(s.reserve()->commit("k1", rec(1)));
  auto held = s.reserve();
  ASSERT_TRUE(held);
  EXPECT_FALSE(s.reserve()) << "1 live + 1 reserved = capacity: full, 503";
  EXPECT_GE(s.retry_after().count(), 1);
  std::this_thread::sleep_for(1100ms);
  EXPECT_FALSE(s.get("k1")) << "Redis expired it (SET … PX)";
  std::this_thread::sleep_for(1000ms);  // the capacity counts whole expiry seconds, rounded up
  EXPECT_TRUE(s.reserve()) << "and its slot is free again";
}

TEST(RedisStore, KilledRedisKeepsRecordsLocallyAndResyncsThemWhenBack) {
  RedisServer redis(/*aof=*/true);
  RedisSignatureStore a(opts(redis.port()));
  RedisSignatureStore b(opts(redis.port()));
  ASSERT_TRUE(a.reserve()->commit("before", rec(1)));

  redis.kill_now();
  ASSERT_TRUE(a.reserve()->commit("during", rec(2))) << "answers keep being signed while Redis is down";
  EXPECT_TRUE(same(a.get("during"), rec(2))) << "served from this replica's memory";
  EXPECT_EQ(fetch_status(a, "before"), GetResult::Status::Unavailable) << "not known here, Redis away: not a 404";
  EXPECT_TRUE(eventually([&] { return !a.stats().connected; }));
  EXPECT_EQ(a.health().connected, 0);
  EXPECT_EQ(a.health().unsynced, 1u);
  EXPECT_GE(a.health().errors, 1u);

  redis.start();  // same port, same directory: the AOF brings "before" back
  ASSERT_TRUE(eventually([&] { return a.stats().connected && a.stats().unsynced == 0; })) << "resynced when back";
  EXPECT_EQ(a.stats().resynced, 1u);
  ASSERT_TRUE(eventually([&] { return b.stats().connected; })) << "the other replica reconnects on its own";
  EXPECT_TRUE(same(b.get("during"), rec(2))) << "the other replica now serves the record kept during the outage";
  EXPECT_TRUE(same(b.get("before"), rec(1))) << "Redis's AOF kept the one written before";
}

TEST(RedisStore, FrozenRedisTimesOutAndCommitsStillComplete) {
  RedisServer redis;
  RedisSignatureStore s(opts(redis.port()));
  ASSERT_TRUE(s.stats().connected);
  redis.freeze();  // accepts nothing, answers nothing
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(s.reserve()->commit("k", rec(3)));
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, 2s) << "bounded by the command timeout, not by Redis";
  EXPECT_EQ(s.stats().kept_locally, 1u);
  EXPECT_TRUE(same(s.get("k"), rec(3)));
  redis.thaw();
  ASSERT_TRUE(eventually([&] { return s.stats().connected && s.stats().unsynced == 0; }));
  RedisSignatureStore other(opts(redis.port()));
  EXPECT_TRUE(same(other.get("k"), rec(3)));
}

TEST(RedisStore, PasswordIsSentAndAWrongOneIsAnOutageNotACrash) {
  RedisServer redis(false, "s3cret pass");
  {
    RedisSignatureStore s(opts(redis.port(), "s3cret pass"));
    ASSERT_TRUE(s.stats().connected);
    ASSERT_TRUE(s.reserve()->commit("k", rec(4)));
    EXPECT_TRUE(same(s.get("k"), rec(4)));
  }
  RedisSignatureStore wrong(opts(redis.port(), "wrong"));
  EXPECT_FALSE(wrong.stats().connected);
  EXPECT_TRUE(wrong.reserve()->commit("k2", rec(5))) << "kept in memory";
  EXPECT_EQ(fetch_status(wrong, "k"), GetResult::Status::Unavailable);
  RedisSignatureStore none(opts(redis.port()));
  EXPECT_FALSE(none.stats().connected) << "NOAUTH: no password, no connection";
}

TEST(RedisStore, UnreachableAtStartUpServesFromMemoryThenConnects) {
  const auto port = free_port();
  auto o = opts(port);
  o.connect_wait = 200ms;
  RedisSignatureStore s(o);
  EXPECT_FALSE(s.stats().connected);
  ASSERT_TRUE(s.reserve()->commit("early", rec(6)));
  EXPECT_TRUE(same(s.get("early"), rec(6)));
  // A server appears on that port: the store connects and writes what it kept.
  std::vector<std::string> args = {kRedisServer, "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", ""};
  TempDir d;
  const pid_t pid = ::fork();
  if (pid == 0) {
    quiet_child();
    if (::chdir(d.path.c_str()) != 0) ::_exit(126);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(kRedisServer, argv.data());
    ::_exit(127);
  }
  const bool synced = eventually([&] { return s.stats().connected && s.stats().unsynced == 0; });
  RedisStoreOptions o2 = opts(port);
  std::optional<StoredRecord> seen;
  if (synced) {
    RedisSignatureStore other(o2);
    seen = other.get("early");
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ASSERT_TRUE(synced);
  EXPECT_TRUE(same(seen, rec(6)));
}

TEST(RedisStore, ManyConcurrentCommitsArePipelinedOnOneConnection) {
  RedisServer redis;
  auto o = opts(redis.port());
  o.capacity = 10000;
  RedisSignatureStore s(o);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::atomic<int> stored{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i)
        s.reserve()->commit_async("t" + std::to_string(t) + "-" + std::to_string(i), rec(7), [&](CommitResult r) {
          if (r == CommitResult::Stored) stored++;
        });
    });
  for (auto& t : ts) t.join();
  s.flush();
  EXPECT_EQ(stored.load(), kThreads * kPerThread);
  EXPECT_EQ(s.stats().written, static_cast<std::uint64_t>(kThreads * kPerThread)) << "all in Redis, none kept locally";
  EXPECT_EQ(s.stats().connects, 1u) << "one connection";
  EXPECT_TRUE(same(s.get("t7-499"), rec(7)));
}

TEST(Config, RedisUrls) {
  auto e = parse_redis_url("redis://cache:6380/2");
  EXPECT_EQ(e.host, "cache");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.db, 2);
  EXPECT_EQ(e.password, "");
  e = parse_redis_url("redis://alice:p%40ss%3Aword@10.0.0.5");
  EXPECT_EQ(e.user, "alice");
  EXPECT_EQ(e.password, "p@ss:word");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.describe(), "redis://alice:***@10.0.0.5:6379") << "never the password";
  e = parse_redis_url("redis://:only-password@[::1]:7000");
  EXPECT_EQ(e.user, "");
  EXPECT_EQ(e.password, "only-password");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.port, 7000);
  EXPECT_EQ(parse_store_spec("redis://h").kind, StoreSpec::Kind::Redis);
  EXPECT_THROW(parse_redis_url("redis://"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://h:0"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://h:99999"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://h/x"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://a:%zz@h"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("rediss://h"), std::invalid_argument);
  EXPECT_THROW(parse_store_spec("redis:/h"), std::invalid_argument);
}

TEST(StoredRecordFormat, RoundTripsAndReadsTheFirstSqliteLayout) {
  auto r = rec(8);
  EXPECT_TRUE(same(decode_record(encode_record(r)), r));
  r.instance_id = std::string(200, 'x');
  EXPECT_EQ(decode_record(encode_record(r))->instance_id.size(), kMaxInstanceIdBytes) << "cut, never overlong";
  std::string legacy(193, '\0');
  legacy[0] = 1;
  legacy[32] = 2;
  auto old = decode_record(legacy);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->request_hash[0], 1);
  EXPECT_EQ(old->response_hash[0], 2);
  EXPECT_EQ(old->instance_id, "");
  EXPECT_FALSE(decode_record("short"));
  EXPECT_FALSE(decode_record(std::string(70, '\x07'))) << "unknown format byte";
}
