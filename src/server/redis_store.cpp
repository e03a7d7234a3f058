#include "server/redis_store.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <future>
#include <unordered_map>
#include <vector>

#include "server/redis_asio.hpp"

namespace pi::server {

namespace net = boost::asio;
using SteadyClock = std::chrono::steady_clock;

struct RedisSignatureStore::Impl {
  struct Op {
    enum class Kind { Setup, Set, Get, Resync } kind = Kind::Setup;
    std::string key;  // the store key (owner \x1f id)
    StoredRecord rec;
    std::int64_t expires_ms = 0;
    SteadyClock::time_point sent;
    CommitCallback commit;
    GetCallback get;
  };
  struct Local {
    StoredRecord rec;
    std::int64_t expires_ms = 0;
  };
  enum class State { Disconnected, Connecting, Ready };

  explicit Impl(RedisSignatureStore& o) : outer(o), opt(o.opt_) {}

  RedisSignatureStore& outer;
  const RedisStoreOptions& opt;
  net::io_context ioc{1};
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  net::steady_timer tick{ioc};
  net::steady_timer reconnect_timer{ioc};

  // The store thread's state.
  redisAsyncContext* ac = nullptr;
  State state = State::Disconnected;
  bool setup_failed = false;
  bool down_logged = false;
  unsigned attempts = 0;
  std::string last_error;
  std::deque<std::unique_ptr<Op>> inflight;  // sent, in order: Redis answers in order
  std::unordered_map<std::string, Local> unsynced;
  bool stopping = false;

  // Read from any thread.
  std::atomic<std::uint64_t> written{0}, collisions{0}, kept_locally{0}, resynced{0}, errors{0}, connects{0};
  std::atomic<std::size_t> unsynced_count{0};
  std::atomic<bool> connected{false};
  std::atomic<std::int64_t> pending_commits{0};
  std::promise<void> first_attempt;  // set when the first connection is ready or has failed
  bool first_attempt_done = false;

  std::string redis_key(const std::string& key) const {
    std::string k = opt.key_prefix;
    k.reserve(k.size() + key.size());
    for (char c : key) k.push_back(c == '\x1f' ? ':' : c);  // owner ":" id (the owner tag is hex)
    return k;
  }

  void first_attempt_over() {
    if (!first_attempt_done) {
      first_attempt_done = true;
      first_attempt.set_value();
    }
  }

  // ----- connection ------------------------------------------------------------------------------

  void send(std::unique_ptr<Op> op, std::initializer_list<std::string_view> args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (auto a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    op->sent = SteadyClock::now();
    Op* raw = op.get();
    inflight.push_back(std::move(op));
    if (redisAsyncCommandArgv(ac, &Impl::on_reply, raw, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      // Not queued (the context is disconnecting): fail it now, as a lost connection would.
      auto failed = std::move(inflight.back());
      inflight.pop_back();
      complete(*failed, nullptr);
    }
  }

  void connect() {
    if (stopping) return;
    state = State::Connecting;
    setup_failed = false;
    ac = redisAsyncConnect(opt.endpoint.host.c_str(), opt.endpoint.port);
    if (ac == nullptr || ac->err != 0) {
      connection_down(ac != nullptr ? ac->errstr : "out of memory");
      if (ac != nullptr) redisAsyncFree(std::exchange(ac, nullptr));
      schedule_reconnect();
      return;
    }
    ac->data = this;
    redis_asio_attach(ac, ioc);
    redisAsyncSetConnectCallback(ac, &Impl::on_connect);
    redisAsyncSetDisconnectCallback(ac, &Impl::on_disconnect);
    // hiredis buffers these until the socket is connected; PING's answer marks the connection ready.
    const auto& e = opt.endpoint;
    if (!e.password.empty()) {
      if (e.user.empty())
        send(std::make_unique<Op>(), {"AUTH", e.password});
      else
        send(std::make_unique<Op>(), {"AUTH", e.user, e.password});
    }
    if (e.db != 0) {
      const auto db = std::to_string(e.db);
      send(std::make_unique<Op>(), {"SELECT", db});
    }
    send(std::make_unique<Op>(), {"PING"});
  }

  void schedule_reconnect() {
    if (stopping) return;
    first_attempt_over();
    const auto shift = std::min(attempts++, 5u);
    const auto delay = std::min(opt.reconnect_max, opt.reconnect_min * (1 << shift));
    reconnect_timer.expires_after(delay);
    reconnect_timer.async_wait([this](const boost::system::error_code& ec) {
      if (!ec && !stopping && ac == nullptr) connect();
    });
  }

  // Logged once per outage, with the first reason.
  void connection_down(const std::string& why) {
    connected = false;
    errors++;
    last_error = why;
    if (!down_logged) {
      down_logged = true;
      spdlog::warn(
          "signature store {}: unreachable ({}); answers keep being signed, their records are kept in this "
          "replica's memory and written to Redis when it is back",
          opt.endpoint.describe(), why);
    }
  }

  // Drops the connection (never from inside a hiredis callback: post it) and reconnects.
  void drop(const std::string& why) {
    if (ac == nullptr) return;
    connection_down(why);
    state = State::Disconnected;
    redisAsyncFree(std::exchange(ac, nullptr));  // fails every command in flight (reply NULL)
    schedule_reconnect();
  }

  void became_ready() {
    state = State::Ready;
    connected = true;
    attempts = 0;
    connects++;
    if (down_logged) {
      spdlog::info("signature store {}: reachable again; writing {} record(s) kept in memory", opt.endpoint.describe(),
                   unsynced.size());
      down_logged = false;
    } else {
      spdlog::info("signature store {}: connected", opt.endpoint.describe());
    }
    first_attempt_over();
    resync();
  }

  static void on_connect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<Impl*>(c->data);
    if (status == REDIS_OK || c != self->ac) return;
    // hiredis frees the context after this returns (and fails the queued commands).
    self->connection_down(c->errstr);
    self->ac = nullptr;
    self->state = State::Disconnected;
    self->schedule_reconnect();
  }

  static void on_disconnect(const redisAsyncContext* c, int /*status*/) {
    auto* self = static_cast<Impl*>(c->data);
    if (c != self->ac) return;  // dropped by us: already handled
    self->connection_down(c->err != 0 ? c->errstr : "connection closed");
    self->ac = nullptr;
    self->state = State::Disconnected;
    self->schedule_reconnect();
  }

  static void on_reply(redisAsyncContext* c, void* reply, void* privdata) {
    auto* self = static_cast<Impl*>(c->data);
    auto* op = static_cast<Op*>(privdata);
    // Redis answers in order, and hiredis fails what is left in order: the reply is for the oldest.
    if (self->inflight.empty() || self->inflight.front().get() != op) {
      spdlog::error("signature store {}: a reply out of order; dropping the connection", self->opt.endpoint.describe());
      net::post(self->ioc, [self] { self->drop("reply out of order"); });
      return;
    }
    auto owned = std::move(self->inflight.front());
    self->inflight.pop_front();
    self->complete(*owned, static_cast<redisReply*>(reply));
  }

  // ----- commands ----------------------------------------------------------------------------------

  static bool is_error(const redisReply* r) { return r == nullptr || r->type == REDIS_REPLY_ERROR; }
  static std::string reason(const redisReply* r) {
    if (r == nullptr) return "connection lost";
    if (r->type == REDIS_REPLY_ERROR) return std::string(r->str, r->len);
    return "unexpected reply";
  }

  void complete(Op& op, redisReply* r) {
    switch (op.kind) {
      case Op::Kind::Setup:
        if (is_error(r)) {
          if (r != nullptr && !setup_failed) {
            setup_failed = true;
            connection_down("connection set-up refused: " + reason(r));
            net::post(ioc, [this] { drop(last_error); });
          }
          return;
        }
        if (r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "PONG" && !setup_failed)
          became_ready();
        return;
      case Op::Kind::Set:
        if (r != nullptr && r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "OK") {
          outer.ledger_.settle(1, 1, op.expires_ms);
          written++;
          finish_commit(op, CommitResult::Stored);
        } else if (r != nullptr && r->type == REDIS_REPLY_NIL) {
          outer.ledger_.settle(1, 0, op.expires_ms);
          collisions++;
          finish_commit(op, CommitResult::Collision);
        } else {
          errors++;
          if (r != nullptr) spdlog::warn("signature store {}: SET failed: {}", opt.endpoint.describe(), reason(r));
          keep_locally(op);
        }
        return;
      case Op::Kind::Get:
        if (r != nullptr && r->type == REDIS_REPLY_STRING) {
          auto rec = decode_record(std::string_view(r->str, r->len));
          if (!rec) spdlog::error("signature store {}: a record that does not decode", opt.endpoint.describe());
          op.get(rec ? GetResult{GetResult::Status::Found, std::move(*rec)} : GetResult{});
        } else if (r != nullptr && r->type == REDIS_REPLY_NIL) {
          op.get(GetResult{});
        } else {
          errors++;
          op.get(GetResult{GetResult::Status::Unavailable, {}});
        }
        return;
      case Op::Kind::Resync:
        if (r != nullptr && (r->type == REDIS_REPLY_NIL ||
                             (r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "OK"))) {
          if (unsynced.erase(op.key) > 0) {
            resynced++;
            unsynced_count = unsynced.size();
          }
        } else {
          errors++;  // stays in memory: written at the next connection
        }
        return;
    }
  }

  void finish_commit(Op& op, CommitResult res) {
    op.commit(res);
    pending_commits--;
  }

  void keep_locally(Op& op) {
    const bool fresh = unsynced.try_emplace(op.key, Local{op.rec, op.expires_ms}).second;
    outer.ledger_.settle(1, fresh ? 1 : 0, op.expires_ms);
    if (fresh) {
      kept_locally++;
      unsynced_count = unsynced.size();
    }
    finish_commit(op, fresh ? CommitResult::Stored : CommitResult::Collision);
  }

  void commit(std::unique_ptr<Op> op) {
    op->kind = Op::Kind::Set;
    op->expires_ms = outer.now_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(opt.ttl).count();
    if (unsynced.contains(op->key)) {  // kept locally before: the first record of an id stays
      outer.ledger_.settle(1, 0, op->expires_ms);
      finish_commit(*op, CommitResult::Collision);
      return;
    }
    if (state != State::Ready) {
      keep_locally(*op);
      return;
    }
    const auto rk = redis_key(op->key);
    const auto value = encode_record(op->rec);
    const auto px = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(opt.ttl).count());
    send(std::move(op), {"SET", rk, value, "PX", px, "NX"});
  }

  void get(std::unique_ptr<Op> op) {
    op->kind = Op::Kind::Get;
    if (auto it = unsynced.find(op->key); it != unsynced.end() && it->second.expires_ms > outer.now_ms()) {
      op->get(GetResult{GetResult::Status::Found, it->second.rec});
      return;
    }
    if (state != State::Ready) {
      op->get(GetResult{GetResult::Status::Unavailable, {}});
      return;
    }
    const auto rk = redis_key(op->key);
    send(std::move(op), {"GET", rk});
  }

  // Writes every record kept in memory with what is left of its TTL.
  void resync() {
    const auto now = outer.now_ms();
    for (auto it = unsynced.begin(); it != unsynced.end();) {
      const auto left = it->second.expires_ms - now;
      if (left <= 0) {
        it = unsynced.erase(it);
        continue;
      }
      auto op = std::make_unique<Op>();
      op->kind = Op::Kind::Resync;
      op->key = it->first;
      const auto rk = redis_key(it->first);
      const auto value = encode_record(it->second.rec);
      const auto px = std::to_string(left);
      send(std::move(op), {"SET", rk, value, "PX", px, "NX"});
      ++it;
    }
    unsynced_count = unsynced.size();
  }

  // Every 50 ms: a command unanswered for command_timeout drops the connection; expired records kept in
  // memory go.
  void on_tick() {
    tick.expires_after(std::chrono::milliseconds(50));
    tick.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopping) return;
      if (ac != nullptr && !inflight.empty() && SteadyClock::now() - inflight.front()->sent > opt.command_timeout) {
        drop("no answer within " + std::to_string(opt.command_timeout.count()) + " ms");
      }
      const auto now = outer.now_ms();
      std::erase_if(unsynced, [now](const auto& kv) { return kv.second.expires_ms <= now; });
      unsynced_count = unsynced.size();
      on_tick();
    });
  }

  void stop() {
    stopping = true;
    tick.cancel();
    reconnect_timer.cancel();
    if (ac != nullptr) redisAsyncFree(std::exchange(ac, nullptr));
    if (!unsynced.empty())
      spdlog::warn("signature store {}: {} record(s) kept in memory were never written to Redis and are lost",
                   opt.endpoint.describe(), unsynced.size());
    work.reset();
  }
};

RedisSignatureStore::RedisSignatureStore(RedisStoreOptions o)
    : opt_(std::move(o)), ledger_(opt_.capacity), impl_(std::make_unique<Impl>(*this)) {
  auto first = impl_->first_attempt.get_future();
  thread_ = std::thread([im = impl_.get()] {
    net::post(im->ioc, [im] {
      im->on_tick();
      im->connect();
    });
    im->ioc.run();
  });
  if (first.wait_for(opt_.connect_wait) != std::future_status::ready || !impl_->connected)
    spdlog::warn("signature store {}: not connected at start-up; serving with records kept in memory until it is",
                 opt_.endpoint.describe());
}

RedisSignatureStore::~RedisSignatureStore() {
  flush();
  net::post(impl_->ioc, [im = impl_.get()] { im->stop(); });
  thread_.join();
}

std::int64_t RedisSignatureStore::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool RedisSignatureStore::try_reserve() { return ledger_.try_reserve(now_ms()); }
void RedisSignatureStore::release() { ledger_.release(); }
std::size_t RedisSignatureStore::size() const { return ledger_.live(now_ms()); }
std::chrono::seconds RedisSignatureStore::retry_after() { return ledger_.retry_after(now_ms()); }

void RedisSignatureStore::commit_async(std::string key, const StoredRecord& rec, CommitCallback done) {
  auto op = std::make_unique<Impl::Op>();
  op->key = std::move(key);
  op->rec = rec;
  op->commit = std::move(done);
  impl_->pending_commits++;
  net::post(impl_->ioc, [im = impl_.get(), op = std::move(op)]() mutable { im->commit(std::move(op)); });
}

void RedisSignatureStore::get_async(const std::string& key, GetCallback done) {
  auto op = std::make_unique<Impl::Op>();
  op->key = key;
  op->get = std::move(done);
  net::post(impl_->ioc, [im = impl_.get(), op = std::move(op)]() mutable { im->get(std::move(op)); });
}

std::optional<StoredRecord> RedisSignatureStore::get(const std::string& key) {
  std::promise<GetResult> p;
  auto f = p.get_future();
  get_async(key, [&p](GetResult r) { p.set_value(std::move(r)); });
  auto r = f.get();
  if (r.status != GetResult::Status::Found) return std::nullopt;
  return std::move(r.record);
}

void RedisSignatureStore::flush() {
  // A commit ends within command_timeout (answered, or kept in memory when the connection is dropped).
  const auto deadline = SteadyClock::now() + opt_.command_timeout + std::chrono::seconds(1);
  while (impl_->pending_commits.load() > 0 && SteadyClock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

StoreHealth RedisSignatureStore::health() const {
  return {impl_->errors.load(), impl_->unsynced_count.load(), impl_->connected.load() ? 1 : 0};
}

RedisSignatureStore::Stats RedisSignatureStore::stats() const {
  const auto& im = *impl_;
  Stats s;
  s.written = im.written.load();
  s.collisions = im.collisions.load();
  s.kept_locally = im.kept_locally.load();
  s.resynced = im.resynced.load();
  s.errors = im.errors.load();
  s.connects = im.connects.load();
  s.unsynced = im.unsynced_count.load();
  s.connected = im.connected.load();
  return s;
}

}  // namespace pi::server
