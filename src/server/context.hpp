#pragma once
// What the proxy's pieces share: the server-wide services, the per-thread worker, and the per-request
// call that the session hands to a handler.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "protocol/signing.hpp"
#include "server/auth.hpp"
#include "server/config.hpp"
#include "server/engine_pool.hpp"
#include "server/http.hpp"
#include "server/limits.hpp"
#include "server/metrics.hpp"
#include "server/proxy.hpp"
#include "server/signature_store.hpp"

namespace pi::server {

struct RouteSpec;

// One per server; every worker thread uses it. Mutable members are thread-safe.
struct Services {
  Services(ServerConfig c, protocol::SigningIdentity id, TeeContext t);

  const ServerConfig cfg;
  const protocol::SigningIdentity identity;
  const TeeContext tee;
  const TokenAuth auth;
  std::unique_ptr<SignatureStore> store;
  Metrics metrics;
  AttestationLimiter attestations;
  BufferBudget buffered;  // request bytes held in memory across connections
  std::atomic<std::size_t> connections{0};
  std::atomic<bool> draining{false};               // shutting down: finish what is in flight, take nothing new
  std::atomic<std::int64_t> requests_inflight{0};  // from a request's head to the end of its answer
};

// One per thread: its own event loop, acceptor and engine connections (shared-nothing).
struct Worker {
  Worker(Services& s, const std::vector<tcp::endpoint>& engine) : svc(s), pool(ioc, s.cfg, engine) {}
  Services& svc;
  net::io_context ioc{1};
  std::optional<tcp::acceptor> acceptor;
  EnginePool pool;
  // Connections waiting for their next request (this worker's thread only): closed when draining.
  std::unordered_set<beast::tcp_stream*> idle;
};

// The client side of one connection.
struct ClientConn {
  explicit ClientConn(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;  // bytes read past the current request (pipelining) stay here
};

// One request, from the session to its handler.
struct Call {
  Worker& worker;
  ClientConn& client;
  Request& req;
  const RouteSpec& route;
  Target target;
  std::string owner;  // namespace of the caller's signature records ("" without tokens)
  Clock::time_point t0;

  Services& svc() const { return worker.svc; }
  bool keep_alive() const { return req.keep_alive(); }
};

}  // namespace pi::server
