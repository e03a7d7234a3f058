// GET /v1/attestation/report (and /v1/attestation): a TDX quote whose report_data binds a signing
// key to the caller's nonce, the event log and Info, and GPU evidence over the same nonce.
#include <spdlog/spdlog.h>
#include <algorithm>
#include <boost/json.hpp>

#include "crypto/random.hpp"
#include "protocol/report.hpp"
#include "server/error.hpp"
#include "server/handlers.hpp"
#include "server/query.hpp"
#include "tee/gpu_evidence.hpp"

namespace pi::server {

namespace json = boost::json;

namespace {

struct AttestationQuery {
  protocol::Nonce nonce{};
  bool nonce_given = false;  // false: a random nonce (or the cached GPU evidence's)
  protocol::SigningAlgo algo = protocol::SigningAlgo::Ecdsa;
};

// ?nonce= (exactly 64 hex digits; absent or empty: random), ?signing_algo=, ?signing_address=
// (must be one of ours, and agree with signing_algo when both are given).
AttestationQuery parse_query(std::string_view query, const protocol::SigningIdentity& identity) {
  AttestationQuery q;
  if (auto n = query_param(query, "nonce"); n && !n->empty()) {
    auto parsed = protocol::parse_nonce(*n);
    if (!parsed)
      throw HttpErrorException(HttpError::bad_request("nonce must be exactly 64 hexadecimal characters (32 bytes)",
                                                      "invalid_nonce", "nonce"));
    q.nonce = *parsed;
    q.nonce_given = true;
  } else {
    crypto::random_fill(q.nonce);
  }
  std::optional<protocol::SigningAlgo> algo;
  if (auto a = query_param(query, "signing_algo"); a && !a->empty()) {
    algo = protocol::parse_signing_algo(*a);
    if (!algo)
      throw HttpErrorException(
          HttpError::bad_request("signing_algo must be 'ecdsa' or 'ed25519'", "invalid_signing_algo", "signing_algo"));
  }
  if (auto addr = query_param(query, "signing_address"); addr && !addr->empty()) {
    std::optional<protocol::SigningAlgo> match;
    for (auto cand : {protocol::SigningAlgo::Ecdsa, protocol::SigningAlgo::Ed25519})
      if (iequals(*addr, identity.signing_address(cand)) && (!algo || *algo == cand)) match = cand;
    if (!match)
      throw HttpErrorException(HttpError::not_found("This server does not hold the requested signing_address",
                                                    "signing_address_not_found", "signing_address"));
    algo = match;
  }
  q.algo = algo.value_or(protocol::SigningAlgo::Ecdsa);
  return q;
}

// The client's address for per-client shares (IPv6: its /64; a v4-mapped address as IPv4). Made
// only when an attestation needs it, not for every connection.
std::string peer_of(const tcp::socket& socket) {
  beast::error_code ec;
  const auto ep = socket.remote_endpoint(ec);
  if (ec) return {};
  const auto a = ep.address();
  if (a.is_v6() && !a.to_v6().is_v4_mapped()) {
    auto b = a.to_v6().to_bytes();
    std::fill(b.begin() + 8, b.end(), 0);  // one client = one /64
    return net::ip::address_v6(b).to_string() + "/64";
  }
  return a.is_v6() ? net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string() : a.to_string();
}

// Whose share an attestation counts against: the namespace of a valid token the caller presented
// (attestation needs none), else its source address.
std::string client_key(const Call& call) {
  if (auto authz = call.req[http::field::authorization]; !authz.empty())
    if (auto owner = call.svc().auth.authenticate(authz); owner && !owner->empty()) return "token:" + *owner;
  return "addr:" + peer_of(call.client.stream.socket());
}

// The report (vllm-proxy's fields plus ours), shaped by protocol::AttestationReport.
protocol::AttestationReport assemble_report(const protocol::SigningIdentity& identity, protocol::SigningAlgo a,
                                            const protocol::Nonce& nonce, const tee::QuoteResult& q, json::object info,
                                            const std::optional<tee::GpuEvidenceResult>& gpu, bool simulated) {
  protocol::AttestationReport r;
  r.signing_address = identity.signing_address(a);
  r.signing_algo = std::string(protocol::to_string(a));
  r.signing_public_key = identity.signing_public_key(a);
  r.request_nonce = to_hex(nonce);
  r.intel_quote = q.quote_hex;
  r.quote = json::value(q.quote_hex);
  r.event_log = protocol::AttestationReport::event_log_from_text(q.event_log);
  r.vm_config = q.vm_config;
  if (const auto* id = info.if_contains("instance_id"); id && id->is_string() && !id->get_string().empty())
    r.instance_id = std::string(id->get_string());
  r.info = json::value(std::move(info));
  if (gpu)
    gpu->apply_to(r);
  else
    r.gpu = protocol::GpuEvidence::disabled();
  r.simulated = simulated;
  if (simulated) r.simulated_notice = std::string(protocol::kSimulatedNotice);
  return r;
}

}  // namespace

awaitable<Response> handle_attestation(Call& call) {
  auto& svc = call.svc();
  const auto& tee = svc.tee;
  const bool keep = call.keep_alive();
  AttestationQuery q = parse_query(call.target.query, svc.identity);
  if (!tee.agent)
    co_return HttpError::unavailable(
        "Attestation is unavailable: this proxy is not running in a TEE (no dstack guest agent socket was found). "
        "Inference and response signatures still work, but nothing proves where they were made.",
        "tee_unavailable", true)
        .render(keep);
  auto slot = svc.attestations.try_acquire(client_key(call));
  if (!slot) {
    svc.metrics.attestation_rejected_busy++;
    co_return HttpError::too_many_requests(
        "Too many attestation requests in flight (in total, or from this client); retry shortly", "attestation_busy", 1)
        .render(keep);
  }

  // GPU evidence first: without a client nonce the cached evidence decides the nonce, so the
  // TDX quote and the GPU reports are bound to the same value.
  std::optional<tee::GpuEvidenceResult> gpu;
  if (tee.gpu) {
    if (q.nonce_given) {
      gpu = co_await tee.gpu->collect(q.nonce);
    } else {
      gpu = co_await tee.gpu->collect_cached();
      if (gpu->ok())
        if (auto n = protocol::parse_nonce(gpu->nonce_hex)) q.nonce = *n;
    }
    if (gpu->status == tee::GpuEvidenceStatus::Busy) {
      svc.metrics.attestation_rejected_busy++;
      co_return HttpError::too_many_requests("Too many GPU evidence collections in flight; retry shortly",
                                             "gpu_evidence_busy", std::max(1u, gpu->retry_after_s))
          .render(keep);
    }
    if (tee.gpu_required && !gpu->ok())
      co_return HttpError::unavailable(
          "GPU evidence is required by this server but could not be collected: " + gpu->error,
          "gpu_evidence_unavailable", false)
          .render(keep);
  }

  const auto report_data = protocol::make_report_data(svc.identity.address_bytes(q.algo), q.nonce);
  std::string agent_error;
  protocol::AttestationReport report;
  try {
    auto quote = co_await tee.agent->get_quote(report_data);
    auto info = co_await tee.agent->info();
    const bool simulated = tee.simulated || quote.simulated || (gpu && gpu->simulated);
    report = assemble_report(svc.identity, q.algo, q.nonce, quote, std::move(info), gpu, simulated);
  } catch (const std::exception& e) {
    agent_error = e.what();
  }
  if (!agent_error.empty()) {
    svc.metrics.attestation_errors++;
    spdlog::error("attestation failed at the TEE agent: {}", agent_error);
    co_return HttpError::bad_gateway("The TEE agent failed: " + agent_error, "tee_agent_error").render(keep);
  }
  co_return json_response(http::status::ok, json::serialize(report.to_json()), keep);
}

}  // namespace pi::server
