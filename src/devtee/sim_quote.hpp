#pragma once
// SIMULATED TDX evidence for dev-tee's test-PKI mode (issue 5): a TDX v4 quote in Intel's exact
// layout over the caller's report_data, signed through the test PKI (test_pki.hpp), with an event
// log in dstack's format whose replay gives exactly the quote's RTMRs and an Info whose app_compose
// hashes to the compose-hash event. Verifies through the real DCAP path only with the TEST root.
//
// The quote is a TDX v4 (TD 1.0) quote in the one layout of protocol/tdx_quote.hpp: the attestation
// key signs header ‖ body; the QE report's report_data = sha256(att key ‖ QE auth) ‖ 0…, signed by the
// PCK key; certification data type 5 = PCK chain PEM (leaf, PCK CA, root). Event digests and RTMRs
// follow protocol/event_log.hpp.
#include <array>
#include <boost/json/object.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/hash.hpp"
#include "devtee/test_pki.hpp"

namespace pi::devtee {

// Values of the simulated TD / module / QE, matched by the generated collateral (sim_collateral).
inline constexpr std::array<std::uint8_t, 16> kSimTeeTcbSvn = {3, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
inline constexpr std::uint16_t kSimQeIsvProdId = 2;
inline constexpr std::uint16_t kSimQeIsvSvn = 4;
std::array<std::uint8_t, 32> sim_qe_mr_signer();  // sha256("SIMULATED dev-tee quoting enclave signer")

struct SimEvent {
  std::uint32_t imr = 0;
  std::uint32_t event_type = 0;
  crypto::Digest48 digest{};
  std::string event;
  Bytes payload;
};

struct SimMeasurements {
  crypto::Digest48 mrtd{};
  std::array<crypto::Digest48, 4> rtmr{};
  std::array<std::uint8_t, 48> mr_config_id{};  // dstack_mr_config_id(compose hash); zero if not set
};

// MRCONFIGID as dstack's VMM sets it for an app without a key-provider id (dstack's MrConfig::V1):
// 0x01 ‖ compose_hash (32 bytes) ‖ 15 zero bytes, where compose_hash = sha256(app_compose).
std::array<std::uint8_t, 48> dstack_mr_config_id(const std::array<std::uint8_t, 32>& compose_hash);

// A dstack runtime event (imr 3, event type 0x08000001, digest by protocol::event_log::runtime_event_digest),
// as the boot events and EmitEvent (devtee::Handler) produce them.
SimEvent sim_runtime_event(std::string name, Bytes payload);

// A small boot log: firmware/kernel events in RTMR0-2 (fixed, labelled simulated) and dstack runtime
// events in RTMR3 (system-preparing, app-id, compose-hash = sha256(app_compose), instance-id,
// boot-mr-done, os-image-hash, system-ready) with digest protocol::event_log::runtime_event_digest.
// `emitted` (EmitEvent calls, in order) follow system-ready, as on a running dstack app.
std::vector<SimEvent> sim_event_log(const std::string& app_compose, const std::vector<SimEvent>& emitted = {});
// RTMRs by protocol::event_log::replay; MRTD is a fixed test value.
SimMeasurements sim_measurements(const std::vector<SimEvent>& events);
// dstack's JSON array form: imr, event_type, digest (hex), event, event_payload (hex).
std::string event_log_json(const std::vector<SimEvent>& events);

// The quote over `report_data` (64 bytes). Throws std::runtime_error on a signing failure.
Bytes build_sim_quote(const TestPki& pki, const SimMeasurements& m, const std::array<std::uint8_t, 64>& report_data);

struct SimEvidence {
  Bytes quote;
  std::string event_log;     // JSON text
  boost::json::object info;  // dstack Info; tcb_info is a JSON *string* as the agent serves it
};

// The default compose served in Info (a fixed, clearly simulated app).
std::string sim_default_app_compose();

// Quote (MRCONFIGID = dstack_mr_config_id(sha256(app_compose))), event log and Info. Info has the fields dstack's
// SDKs require (app_id, instance_id, app_cert (empty: no KMS), device_id, key_provider_info, compose_hash,
// os_image_hash, mr_aggregated; tcb_info with mrtd, rtmr0-3, mr_aggregated, os_image_hash, compose_hash,
// device_id, app_compose, event_log).
SimEvidence make_sim_evidence(const TestPki& pki, const std::array<std::uint8_t, 64>& report_data,
                              const std::string& app_compose, const std::vector<SimEvent>& emitted = {});

}  // namespace pi::devtee
