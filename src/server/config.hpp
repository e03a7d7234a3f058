#pragma once
// Configuration of `private-inference serve` (flags with environment fall-backs, see cmd_serve.cpp).
#include <chrono>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

namespace pi::server {

struct BackendUrl {
  std::string host;
  std::string port;
  std::string prefix;  // path prefix without trailing '/', e.g. "" or "/engine"
  std::string host_header() const { return host + ":" + port; }
};
// "http://host[:port][/prefix]" → BackendUrl; throws std::invalid_argument (https is not supported:
// the backend is on the confidential VM's private network).
BackendUrl parse_backend_url(const std::string& url);

struct ListenAddress {
  std::string host;
  unsigned short port = 8000;
};
ListenAddress parse_listen(const std::string& s);  // "host:port", "[v6]:port" or ":port"

// A Redis server: "redis://[[user]:password@]host[:port][/db]" (user and password percent-decoded).
struct RedisEndpoint {
  std::string host = "127.0.0.1";
  unsigned short port = 6379;
  std::string user;      // Redis 6 ACL user; empty: the default user
  std::string password;  // empty: no AUTH
  int db = 0;
  // For logs: never the password.
  std::string describe() const;
};
RedisEndpoint parse_redis_url(const std::string& url);  // throws std::invalid_argument

// Where signature records are kept: "memory" (lost on restart; tests), "sqlite:PATH" (a file) or
// "redis://…" (shared by a fleet of replicas).
struct StoreSpec {
  enum class Kind { Memory, Sqlite, Redis } kind = Kind::Memory;
  std::string path;     // Sqlite: the database file
  RedisEndpoint redis;  // Redis
  std::string describe() const;
};
// "memory" | "sqlite:PATH" (PATH non-empty) | "redis://…"; throws std::invalid_argument otherwise.
StoreSpec parse_store_spec(const std::string& s);
// The database file under a state directory.
inline std::string default_store_path(const std::string& state_dir) { return state_dir + "/signatures.db"; }

struct ServerConfig {
  BackendUrl backend;
  ListenAddress listen;
  std::string model;
  std::vector<std::string> tokens;  // empty: no authentication
  std::string backend_api_key;      // sent to the backend as Bearer, never to clients
  std::string dstack_socket;        // explicit socket/endpoint (discovery if empty)
  std::chrono::seconds signature_ttl{1200};
  std::size_t signature_capacity = 100000;
  StoreSpec store;  // `serve` defaults to sqlite under --state-dir; the library default is memory
  std::size_t max_body_bytes = 10u << 20;
  std::size_t max_backend_body_bytes = 256u << 20;  // non-streaming backend answers
  std::chrono::seconds connect_timeout{10};
  std::chrono::seconds backend_timeout{600};  // idle time between backend bytes
  std::chrono::seconds client_timeout{60};    // reading a request / writing to a stalled client
  unsigned threads = 0;                       // 0: hardware concurrency
  std::set<std::string, std::less<>> public_endpoints{"attestation", "models", "health", "version", "metrics"};
  std::size_t max_concurrent_attestations = 16;  // in total; one client gets at most a quarter (≥ 1)
  std::size_t max_connections = 10000;           // client connections open at once (more: 503 and close)
  std::size_t max_buffered_bytes = 128u << 20;   // request heads and bodies held in memory, all connections
  // On SIGTERM/SIGINT: stop accepting, let requests in flight finish (and be signed) this long, then exit.
  std::chrono::milliseconds shutdown_grace{std::chrono::seconds(30)};
};

}  // namespace pi::server
