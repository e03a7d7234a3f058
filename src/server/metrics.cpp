#include "server/metrics.hpp"

#include <fmt/format.h>

namespace pi::server {

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::uint64_t cum = 0;
  const std::string sep = labels.empty() ? "" : ",";
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cum += buckets_[i].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, kBounds[i], cum);
  }
  cum += buckets_[kBounds.size()].load(std::memory_order_relaxed);
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, cum);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, static_cast<double>(sum_micros_.load()) / 1e6);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_.load());
}

Metrics::Metrics(std::span<const std::string> route_labels)
    : labels(route_labels.begin(), route_labels.end()),
      responses(std::make_unique<std::array<std::atomic<std::uint64_t>, 6>[]>(labels.size())),
      duration(std::make_unique<Histogram[]>(labels.size())) {}

void Metrics::count_response(std::size_t route, unsigned status) {
  std::size_t cls = status >= 100 && status < 600 ? status / 100 : 0;
  responses[route][cls].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::observe_duration(std::size_t route, Clock::time_point t0) {
  duration[route].observe(std::chrono::duration<double>(Clock::now() - t0).count());
}

std::string Metrics::render(std::size_t store_size, std::size_t store_capacity, const StoreHealth& store) const {
  std::string out;
  out.reserve(8192);
  out +=
      "# HELP pi_http_responses_total HTTP responses sent by the proxy, by route and status class (aborted: connection "
      "dropped).\n";
  out += "# TYPE pi_http_responses_total counter\n";
  static const char* kClass[] = {"aborted", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t r = 0; r < labels.size(); ++r)
    for (std::size_t c = 0; c < 6; ++c) {
      auto v = responses[r][c].load();
      if (v) out += fmt::format("pi_http_responses_total{{route=\"{}\",status=\"{}\"}} {}\n", labels[r], kClass[c], v);
    }
  out += "# HELP pi_http_request_duration_seconds Time from request read to response fully sent.\n";
  out += "# TYPE pi_http_request_duration_seconds histogram\n";
  for (std::size_t r = 0; r < labels.size(); ++r)
    duration[r].render(out, "pi_http_request_duration_seconds", fmt::format("route=\"{}\"", labels[r]));
  auto counter = [&](const char* name, const char* help, std::uint64_t v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  counter("pi_signatures_created_total", "Responses signed (ECDSA + Ed25519) and stored.", signatures_created.load());
  counter("pi_unsigned_incomplete_total", "Responses not signed: stream without [DONE], backend error, or client gone.",
          unsigned_incomplete.load());
  counter("pi_unsigned_no_id_total", "Streamed responses not signed because no id was found.", unsigned_no_id.load());
  counter("pi_signature_id_collisions_total", "Signatures not stored because the id already had a record.",
          signature_id_collisions.load());
  counter("pi_signature_store_full_total", "Requests refused with 503 because the signature store was full.",
          store_full_rejections.load());
  counter("pi_connections_refused_total", "Connections refused with 503 because --max-connections were open.",
          connections_refused.load());
  counter("pi_buffer_full_rejections_total",
          "Requests refused with 503 because --max-buffered-bytes of request data were held in memory.",
          buffer_full_rejections.load());
  counter("pi_client_disconnects_total",
          "Clients that went away before the response finished (backend request cancelled).",
          client_disconnects.load());
  counter("pi_backend_connect_errors_total", "Failures to connect to the backend.", backend_connect_errors.load());
  counter("pi_backend_timeouts_total", "Backend requests that timed out.", backend_timeouts.load());
  counter("pi_attestation_rejected_busy_total", "Attestation requests refused with 429 (too many in flight).",
          attestation_rejected_busy.load());
  counter("pi_attestation_errors_total", "Attestation requests that failed at the TEE agent.",
          attestation_errors.load());
  counter("pi_bytes_received_total", "Request body bytes received from clients.", bytes_in.load());
  counter("pi_bytes_sent_total", "Response body bytes sent to clients.", bytes_out.load());
  gauge("pi_inflight_requests", "Requests being handled now.", static_cast<double>(inflight.load()));
  gauge("pi_signature_store_records", "Signature records held (not expired).", static_cast<double>(store_size));
  gauge("pi_signature_store_capacity", "Maximum signature records.", static_cast<double>(store_capacity));
  counter("pi_signature_store_errors_total",
          "Signature store failures (Redis: error reply, connection lost or refused, command timeout).", store.errors);
  gauge("pi_signature_store_unsynced_records",
        "Records kept in this replica's memory while the shared store (Redis) was unreachable, not yet written there.",
        static_cast<double>(store.unsynced));
  if (store.connected >= 0)
    gauge("pi_signature_store_connected", "1 while the shared signature store (Redis) is reachable.",
          static_cast<double>(store.connected));
  return out;
}

}  // namespace pi::server
