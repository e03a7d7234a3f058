#pragma once
// The attested signing proxy: an asynchronous (Boost.Asio/Beast, C++20 coroutines) HTTP/1.1
// server that forwards OpenAI-compatible requests byte-for-byte to a backend engine, hashes the
// exact bytes in both directions as they pass, signs completed exchanges, and serves signatures
// and TEE attestation reports. Shared-nothing workers: one io_context per thread, each with its
// own SO_REUSEPORT acceptor and backend connection pool. How a request flows through the pieces
// (session → route table → handler or relay → response signer) is drawn in docs/architecture.md.
#include <memory>
#include <string>

#include "protocol/signing.hpp"
#include "server/config.hpp"
#include "server/signature_store.hpp"
#include "tee/agent.hpp"
#include "tee/gpu_source.hpp"

namespace pi::server {

struct TeeContext {
  std::shared_ptr<tee::TeeAgent> agent;  // nullptr: not in a TEE (attestation → 503)
  bool simulated = false;                // the agent is a simulator (dev-tee)
  bool keys_from_tee = false;            // signing keys derived with dstack GetKey
  std::string agent_version;             // from /Version, informational
  // GPU evidence (NVML today; nullptr: --gpu-evidence off). Must outlive the server.
  std::shared_ptr<tee::GpuEvidenceSource> gpu;
  bool gpu_required = false;  // --gpu-evidence required: no evidence → 503
  // The dstack instance id (Info), recorded with every signature record and named in attestation
  // reports, so an auditor can tell which attested replica of a fleet served an answer. "" outside a TEE.
  std::string instance_id;
};

class ProxyServer {
 public:
  // `store` nullptr: records in memory (cfg.signature_capacity, cfg.signature_ttl).
  ProxyServer(ServerConfig cfg, protocol::SigningIdentity identity, TeeContext tee,
              std::unique_ptr<SignatureStore> store = nullptr);
  ~ProxyServer();
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds the listening sockets (throws on failure) and returns the bound port.
  unsigned short bind();
  // Serves until stop(), or until a drain ends (SIGINT/SIGTERM when handle_signals, or drain()).
  // Blocking; call bind() first.
  void run(bool handle_signals = true);
  // Graceful: stop accepting, close idle connections, let requests in flight finish (streams are
  // completed and signed) for up to cfg.shutdown_grace, then stop. Thread-safe; returns at once.
  void drain();
  // Immediate: stops the event loops now (requests in flight are cut).
  void stop();

  // The store this server signs into (still readable after run() has returned).
  SignatureStore& store();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pi::server
