#pragma once
// The GPU evidence seam: what the proxy's attestation needs from the GPUs. NVML
// (tee::GpuEvidenceCollector) is the implementation today; chosen at start-up.
#include <boost/asio/awaitable.hpp>
#include <string>

#include "protocol/signing.hpp"

namespace pi::tee {

struct GpuEvidenceResult;

class GpuEvidenceSource {
 public:
  virtual ~GpuEvidenceSource() = default;
  virtual bool available() const = 0;
  virtual const std::string& load_error() const = 0;
  virtual bool simulated() const = 0;
  // Evidence bound to `nonce`; completion on the awaiting coroutine's executor.
  virtual boost::asio::awaitable<GpuEvidenceResult> collect(const protocol::Nonce& nonce) = 0;
  // Recent evidence bound to a nonce of the source's choosing (result.nonce_hex).
  virtual boost::asio::awaitable<GpuEvidenceResult> collect_cached() = 0;
  virtual void render_metrics(std::string& out) const = 0;
  // Completes pending requests; called once the event loops that awaited them have stopped.
  virtual void shutdown() = 0;
};

}  // namespace pi::tee
