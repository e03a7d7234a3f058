#pragma once
// The proxy's own Prometheus metrics (text exposition format 0.0.4). Lock-free counters and
// fixed-bucket histograms; rendering takes a snapshot.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace pi::server {

using Clock = std::chrono::steady_clock;

class Histogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1,    2.5,   10};
  void observe(double seconds);
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

// What a signature store reports about its health (a networked store: Redis).
struct StoreHealth {
  std::uint64_t errors = 0;  // commands that failed
  std::size_t unsynced = 0;  // records kept locally, waiting for the shared store
  int connected = -1;        // 1/0 for a networked store; -1: not one
};

// Per-route series are indexed by route (the route table's metric index); `labels` names them.
struct Metrics {
  explicit Metrics(std::span<const std::string> route_labels);

  std::vector<std::string> labels;
  std::unique_ptr<std::array<std::atomic<std::uint64_t>, 6>[]> responses;  // by status class 1xx..5xx, [0]=aborted
  std::unique_ptr<Histogram[]> duration;
  std::atomic<std::uint64_t> signatures_created{0};
  std::atomic<std::uint64_t> unsigned_incomplete{0};  // stream without [DONE], backend error, client gone
  std::atomic<std::uint64_t> unsigned_no_id{0};
  std::atomic<std::uint64_t> signature_id_collisions{0};
  std::atomic<std::uint64_t> store_full_rejections{0};
  std::atomic<std::uint64_t> connections_refused{0};     // over --max-connections
  std::atomic<std::uint64_t> buffer_full_rejections{0};  // over --max-buffered-bytes
  std::atomic<std::uint64_t> client_disconnects{0};
  std::atomic<std::uint64_t> backend_connect_errors{0};
  std::atomic<std::uint64_t> backend_timeouts{0};
  std::atomic<std::uint64_t> attestation_rejected_busy{0};
  std::atomic<std::uint64_t> attestation_errors{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::int64_t> inflight{0};

  void count_response(std::size_t route, unsigned status);
  void observe_duration(std::size_t route, Clock::time_point t0);
  std::string render(std::size_t store_size, std::size_t store_capacity, const StoreHealth& store) const;
};

}  // namespace pi::server
