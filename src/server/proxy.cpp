// The server: binds one SO_REUSEPORT acceptor per worker thread, accepts connections and runs a
// session for each. Everything a request does from there is in session.cpp (HTTP/1.1), routes.cpp
// (which handler), handlers.cpp / attestation.cpp (the proxy's own endpoints), relay.cpp and
// stream_pump.cpp (the engine), response_signer.cpp (what gets signed). See docs/architecture.md.
#include "server/proxy.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <thread>
#include <vector>

#include "server/context.hpp"
#include "server/error.hpp"
#include "server/redis_store.hpp"
#include "server/routes.hpp"
#include "server/session.hpp"
#include "server/sqlite_store.hpp"

namespace pi::server {

Services::Services(ServerConfig c, protocol::SigningIdentity id, TeeContext t)
    : cfg(std::move(c)),
      identity(std::move(id)),
      tee(std::move(t)),
      auth(cfg.tokens),
      metrics(metric_labels()),
      attestations(cfg.max_concurrent_attestations, std::max<std::size_t>(1, cfg.max_concurrent_attestations / 4)),
      buffered(cfg.max_buffered_bytes) {}

struct ProxyServer::Impl {
  Impl(ServerConfig c, protocol::SigningIdentity id, TeeContext t, std::unique_ptr<SignatureStore> s)
      : svc(std::move(c), std::move(id), std::move(t)) {
    svc.store = s ? std::move(s) : make_store();
    spdlog::info("signature store: {}", svc.store->describe());
  }

  // The store cfg.store names. Records are rendered with this server's signing addresses, so the
  // SQLite file is bound to them (records signed by other keys are not served).
  std::unique_ptr<SignatureStore> make_store() {
    const auto& c = svc.cfg;
    if (c.store.kind == StoreSpec::Kind::Memory)
      return std::make_unique<MemorySignatureStore>(c.signature_capacity, c.signature_ttl);
    if (c.store.kind == StoreSpec::Kind::Redis) {
      // Keys are namespaced by the fleet's signing address: a replica never serves another key's records.
      RedisStoreOptions o;
      o.endpoint = c.store.redis;
      o.capacity = c.signature_capacity;
      o.ttl = c.signature_ttl;
      o.key_prefix = "pi:sig:" + svc.identity.signing_address(protocol::SigningAlgo::Ecdsa) + ":";
      return std::make_unique<RedisSignatureStore>(std::move(o));
    }
    SqliteStoreOptions o;
    o.path = c.store.path;
    o.capacity = c.signature_capacity;
    o.ttl = c.signature_ttl;
    o.signer = "ecdsa=" + svc.identity.signing_address(protocol::SigningAlgo::Ecdsa) +
               " ed25519=" + svc.identity.signing_address(protocol::SigningAlgo::Ed25519);
    return std::make_unique<SqliteSignatureStore>(std::move(o));
  }

  ~Impl() {
    if (svc.store) svc.store->flush();  // before the workers' loops (commit handlers post to them) go
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  Services svc;
  std::vector<tcp::endpoint> engine_endpoints;
  std::vector<std::unique_ptr<Worker>> workers;
  unsigned short port = 0;

  // Runs on worker 0: waits until no request is in flight and every connection has ended (idle ones
  // are closed at once, the others after their answer), or the grace period is over, then stops.
  awaitable<void> drain_watch(ProxyServer& server) {
    const auto deadline = Clock::now() + svc.cfg.shutdown_grace;
    net::steady_timer t(workers[0]->ioc);
    while ((svc.requests_inflight.load() > 0 || svc.connections.load() > 0) && Clock::now() < deadline) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(kTuple);
    }
    const auto left = svc.requests_inflight.load();
    if (left > 0)
      spdlog::warn("shutdown grace ({} ms) over: {} request(s) still in flight are cut", svc.cfg.shutdown_grace.count(),
                   left);
    else
      spdlog::info("drained: every request in flight finished");
    server.stop();
  }

  // Over --max-connections: a short 503 (the client learns why and when to retry), then close.
  static awaitable<void> refuse_connection(tcp::socket sock) {
    beast::tcp_stream s(std::move(sock));
    auto res = HttpError::unavailable("Too many connections; retry shortly", "too_many_connections", false)
                   .with_header(http::field::retry_after, "1")
                   .render(false);
    s.expires_after(std::chrono::seconds(2));
    co_await http::async_write(s, res, kTuple);
    beast::error_code ignored;
    s.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  static awaitable<void> accept_loop(Worker& w) {
    for (;;) {
      auto [ec, sock] = co_await w.acceptor->async_accept(kTuple);
      if (ec) {
        if (ec == net::error::operation_aborted || !w.acceptor->is_open()) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        continue;
      }
      beast::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      if (w.svc.connections.load() >= w.svc.cfg.max_connections) {
        w.svc.metrics.connections_refused++;
        net::co_spawn(w.ioc, refuse_connection(std::move(sock)), net::detached);
        continue;
      }
      net::co_spawn(w.ioc, run_session(w, std::move(sock)), [](const std::exception_ptr& e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("session ended with an error: {}", ex.what());
        }
      });
    }
  }
};

ProxyServer::ProxyServer(ServerConfig cfg, protocol::SigningIdentity identity, TeeContext tee,
                         std::unique_ptr<SignatureStore> store)
    : impl_(std::make_unique<Impl>(std::move(cfg), std::move(identity), std::move(tee), std::move(store))) {}
ProxyServer::~ProxyServer() = default;

unsigned short ProxyServer::bind() {
  auto& im = *impl_;
  const auto& cfg = im.svc.cfg;
  unsigned n = cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  {
    net::io_context tmp;
    tcp::resolver r(tmp);
    for (const auto& e : r.resolve(cfg.backend.host, cfg.backend.port)) im.engine_endpoints.push_back(e.endpoint());
    if (im.engine_endpoints.empty()) throw std::runtime_error("backend host did not resolve: " + cfg.backend.host);
  }
  auto addr = net::ip::make_address(cfg.listen.host);
  unsigned short port = cfg.listen.port;
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>(im.svc, im.engine_endpoints);
    tcp::endpoint ep(addr, port);
    w->acceptor.emplace(w->ioc);
    w->acceptor->open(ep.protocol());
    w->acceptor->set_option(net::socket_base::reuse_address(true));
    int one = 1;
    ::setsockopt(w->acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    w->acceptor->bind(ep);
    w->acceptor->listen(net::socket_base::max_listen_connections);
    port = w->acceptor->local_endpoint().port();  // an ephemeral port is shared by the next workers
    im.workers.push_back(std::move(w));
  }
  im.port = port;
  return port;
}

void ProxyServer::run(bool handle_signals) {
  auto& im = *impl_;
  if (im.workers.empty()) bind();
  std::optional<net::signal_set> signals;
  if (handle_signals) {
    signals.emplace(im.workers[0]->ioc, SIGINT, SIGTERM);
    signals->async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("signal {} received: draining (up to {} ms) before exit", sig,
                   impl_->svc.cfg.shutdown_grace.count());
      drain();
    });
  }
  for (auto& w : im.workers) net::co_spawn(w->ioc, Impl::accept_loop(*w), net::detached);
  spdlog::info("listening on {}:{} ({} worker thread{})", im.svc.cfg.listen.host, im.port, im.workers.size(),
               im.workers.size() == 1 ? "" : "s");
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < im.workers.size(); ++i) threads.emplace_back([&w = *im.workers[i]] { w.ioc.run(); });
  im.workers[0]->ioc.run();
  for (auto& t : threads) t.join();
  // Commits still being written complete (their handlers are posted to the stopped loops and
  // destroyed with them) before the loops go away.
  im.svc.store->flush();
  // The event loops have stopped: complete GPU-evidence requests still waiting before the loops
  // (and the coroutines parked on them) are destroyed.
  if (im.svc.tee.gpu) im.svc.tee.gpu->shutdown();
}

void ProxyServer::drain() {
  auto& im = *impl_;
  if (im.workers.empty() || im.svc.draining.exchange(true)) return;
  for (auto& w : im.workers)
    net::post(w->ioc, [&w = *w] {
      beast::error_code ignored;
      if (w.acceptor) w.acceptor->close(ignored);
      for (auto* s : w.idle) s->socket().cancel(ignored);  // their sessions see the drain and end
    });
  net::co_spawn(im.workers[0]->ioc, im.drain_watch(*this), net::detached);
}

SignatureStore& ProxyServer::store() { return *impl_->svc.store; }

void ProxyServer::stop() {
  for (auto& w : impl_->workers) w->ioc.stop();
}

}  // namespace pi::server
