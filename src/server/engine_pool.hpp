#pragma once
// Connections from one worker to the engine: keep-alive sockets reused by that worker only.
#include <optional>
#include <string>
#include <vector>

#include "server/config.hpp"
#include "server/http.hpp"

namespace pi::server {

struct EngineConn {
  beast::tcp_stream stream;
  bool reused = false;  // taken from the idle pool (the engine may have closed it meanwhile)
};

class EnginePool {
 public:
  EnginePool(net::io_context& ioc, const ServerConfig& cfg, const std::vector<tcp::endpoint>& endpoints)
      : ioc_(ioc), cfg_(cfg), endpoints_(endpoints) {}

  // An idle connection (allow_reuse) or a new one; nullopt with `ec` set when connecting failed.
  awaitable<std::optional<EngineConn>> acquire(bool allow_reuse, beast::error_code& ec);
  // Back to the idle pool (if still open and the pool has room).
  void release(EngineConn& c);
  // A plain GET to the engine (e.g. its /metrics); nullopt on any failure or a non-200 answer.
  awaitable<std::optional<std::string>> get(std::string path);

 private:
  net::io_context& ioc_;
  const ServerConfig& cfg_;
  const std::vector<tcp::endpoint>& endpoints_;
  std::vector<tcp::socket> idle_;
};

}  // namespace pi::server
