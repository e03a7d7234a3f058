#include "devtee/sim_quote.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cstring>

#include "protocol/event_log.hpp"
#include "protocol/tdx_quote.hpp"

namespace pi::devtee {
namespace {

namespace json = boost::json;
namespace tdx = protocol::tdx;
namespace evlog = protocol::event_log;

constexpr std::array<std::uint8_t, 16> kIntelQeVendorId = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                                           0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};

crypto::Digest48 label48(std::string_view label) { return crypto::sha384(as_bytes(label)); }

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// SGX report body of the simulated TD quoting enclave.
tdx::EnclaveReport qe_report(const std::array<std::uint8_t, 32>& report_data_hash) {
  tdx::EnclaveReport r;
  std::copy(kSimCpuSvn.begin(), kSimCpuSvn.end(), r.cpu_svn.begin());
  r.attributes[0] = 0x11;  // INIT | MODE64BIT, not DEBUG
  r.mr_enclave = crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee QE mrenclave")));
  r.mr_signer = sim_qe_mr_signer();
  r.isv_prod_id = kSimQeIsvProdId;
  r.isv_svn = kSimQeIsvSvn;
  std::copy(report_data_hash.begin(), report_data_hash.end(), r.report_data.begin());
  r.raw = tdx::serialize_enclave_report(r);
  return r;
}

// dstack's app_name is the compose's "name".
std::string app_name_of(const std::string& app_compose) {
  boost::system::error_code ec;
  json::value v = json::parse(app_compose, ec);
  if (!ec && v.is_object())
    if (const auto* n = v.as_object().if_contains("name"); n && n->is_string()) return std::string(n->as_string());
  return "dev-tee-simulated-app";
}

}  // namespace

SimEvent sim_runtime_event(std::string name, Bytes payload) {
  SimEvent e;
  e.imr = evlog::kRuntimeEventImr;
  e.event_type = evlog::kDstackRuntimeEventType;
  e.event = std::move(name);
  e.payload = std::move(payload);
  e.digest = evlog::runtime_event_digest(e.event_type, e.event, e.payload);
  return e;
}

std::array<std::uint8_t, 48> dstack_mr_config_id(const std::array<std::uint8_t, 32>& compose_hash) {
  std::array<std::uint8_t, 48> id{};
  id[0] = 0x01;
  std::copy(compose_hash.begin(), compose_hash.end(), id.begin() + 1);
  return id;
}

std::array<std::uint8_t, 32> sim_qe_mr_signer() {
  return crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee quoting enclave signer")));
}

std::string sim_default_app_compose() {
  json::object o;
  o["manifest_version"] = 2;
  o["name"] = "dev-tee-simulated-app";
  o["runner"] = "docker-compose";
  o["docker_compose_file"] =
      "# SIMULATED dev-tee app: not measured by real hardware\nservices:\n  proxy:\n    image: private-inference\n";
  o["kms_enabled"] = false;
  o["simulated"] = true;
  return json::serialize(o);
}

std::vector<SimEvent> sim_event_log(const std::string& app_compose, const std::vector<SimEvent>& emitted) {
  std::vector<SimEvent> ev;
  auto fixed = [&](std::uint32_t imr, std::uint32_t type, const char* label) {
    SimEvent e;
    e.imr = imr;
    e.event_type = type;
    e.digest = label48(label);
    e.payload = text_bytes(label);
    ev.push_back(std::move(e));
  };
  fixed(0, 0x80000001, "SIMULATED firmware config");
  fixed(0, 0x80000002, "SIMULATED firmware volume");
  fixed(1, 0x80000003, "SIMULATED boot loader");
  fixed(2, 0x0000000d, "SIMULATED kernel command line");
  fixed(2, 0x0000000d, "SIMULATED initrd");
  auto compose_hash = crypto::sha256(as_bytes(app_compose));
  auto app_id = crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee app id")));
  auto instance_id = crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee instance id")));
  auto os_image = crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee os image")));
  ev.push_back(sim_runtime_event("system-preparing", {}));
  ev.push_back(sim_runtime_event("app-id", Bytes(app_id.begin(), app_id.begin() + 20)));
  ev.push_back(sim_runtime_event("compose-hash", Bytes(compose_hash.begin(), compose_hash.end())));
  ev.push_back(sim_runtime_event("instance-id", Bytes(instance_id.begin(), instance_id.begin() + 20)));
  ev.push_back(sim_runtime_event("boot-mr-done", {}));
  ev.push_back(sim_runtime_event("os-image-hash", Bytes(os_image.begin(), os_image.end())));
  ev.push_back(sim_runtime_event("system-ready", {}));
  ev.insert(ev.end(), emitted.begin(), emitted.end());
  return ev;
}

SimMeasurements sim_measurements(const std::vector<SimEvent>& events) {
  SimMeasurements m;
  m.mrtd = label48("SIMULATED dev-tee MRTD");
  std::vector<evlog::Measurement> measured;
  measured.reserve(events.size());
  for (const auto& e : events) measured.push_back({e.imr, e.digest});
  m.rtmr = evlog::replay(measured);
  return m;
}

std::string event_log_json(const std::vector<SimEvent>& events) {
  json::array a;
  for (const auto& e : events)
    a.push_back(json::object{{"imr", e.imr},
                             {"event_type", e.event_type},
                             {"digest", to_hex(e.digest)},
                             {"event", e.event},
                             {"event_payload", to_hex(e.payload)}});
  return json::serialize(a);
}

Bytes build_sim_quote(const TestPki& pki, const SimMeasurements& m, const std::array<std::uint8_t, 64>& report_data) {
  tdx::Quote q;
  q.version = 4;
  q.attestation_key_type = tdx::kAttestationKeyEcdsaP256;
  q.tee_type = tdx::kTeeTypeTdx;
  q.qe_vendor_id = kIntelQeVendorId;
  std::memcpy(q.user_data.data(), "SIMULATED dev-tee", 17);
  // TD report body (TD 1.0); fields not set here stay zero (mr_signer_seam: Intel's module)
  q.td.tee_tcb_svn = kSimTeeTcbSvn;
  q.td.mr_seam = label48("SIMULATED dev-tee MRSEAM");
  q.td.td_attributes = {0, 0, 0, 0x10, 0, 0, 0, 0};  // SEPT_VE_DISABLE, not DEBUG
  q.td.xfam = {0xe7, 0x02, 0x06, 0, 0, 0, 0, 0};
  q.td.mr_td = m.mrtd;
  q.td.mr_config_id = m.mr_config_id;
  q.td.rtmr = m.rtmr;
  q.td.report_data = report_data;

  q.attestation_key = p256_public_raw(pki.attestation_key_pem);
  q.quote_signature = sign_p256_raw(pki.attestation_key_pem, tdx::serialize_signed_part(q));

  // 32 bytes, as Intel's QE produces (dcap-qvl rejects other lengths)
  q.qe_auth_data = text_bytes("SIMULATED dev-tee QE auth data..");
  static_assert(sizeof("SIMULATED dev-tee QE auth data..") - 1 == 32);
  Bytes h(q.attestation_key.begin(), q.attestation_key.end());
  h.insert(h.end(), q.qe_auth_data.begin(), q.qe_auth_data.end());
  q.qe_report = qe_report(crypto::sha256(h));
  q.qe_report_signature = sign_p256_raw(pki.pck_key_pem, q.qe_report.raw);
  q.cert_data_type = tdx::signature_data::kCertPckChain;
  q.cert_data = text_bytes(pki.pck_chain_pem());
  return tdx::serialize_quote(q);
}

SimEvidence make_sim_evidence(const TestPki& pki, const std::array<std::uint8_t, 64>& report_data,
                              const std::string& app_compose, const std::vector<SimEvent>& emitted) {
  auto events = sim_event_log(app_compose, emitted);
  auto m = sim_measurements(events);
  const auto compose_digest = crypto::sha256(as_bytes(app_compose));
  m.mr_config_id = dstack_mr_config_id(compose_digest);
  SimEvidence out;
  out.quote = build_sim_quote(pki, m, report_data);
  out.event_log = event_log_json(events);
  const auto compose_hash = to_hex(compose_digest);
  // dstack's mr_aggregated: sha256(MRTD ‖ RTMR0..3), followed by MRCONFIGID ‖ MROWNER ‖ MROWNERCONFIG when any
  // of them is non-zero (checked against the recorded Phala Cloud Info, tests/unit/devtee_pki_test.cpp).
  Bytes agg(m.mrtd.begin(), m.mrtd.end());
  for (const auto& r : m.rtmr) agg.insert(agg.end(), r.begin(), r.end());
  agg.insert(agg.end(), m.mr_config_id.begin(), m.mr_config_id.end());
  agg.insert(agg.end(), 96, 0);  // MROWNER, MROWNERCONFIG: zero
  const auto mr_aggregated = to_hex(crypto::sha256(agg));
  const auto device_id = to_hex(crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee device id"))));
  std::string app_id, instance_id, os_image_hash;
  for (const auto& e : events) {
    if (e.event == "app-id") app_id = to_hex(e.payload);
    if (e.event == "instance-id") instance_id = to_hex(e.payload);
    if (e.event == "os-image-hash") os_image_hash = to_hex(e.payload);
  }
  json::object tcb;
  tcb["mrtd"] = to_hex(m.mrtd);
  for (int i = 0; i < 4; ++i) tcb["rtmr" + std::to_string(i)] = to_hex(m.rtmr[static_cast<std::size_t>(i)]);
  tcb["mr_aggregated"] = mr_aggregated;
  tcb["os_image_hash"] = os_image_hash;
  tcb["compose_hash"] = compose_hash;
  tcb["device_id"] = device_id;
  tcb["app_compose"] = app_compose;
  tcb["event_log"] = json::parse(out.event_log);
  out.info["app_id"] = app_id;
  out.info["instance_id"] = instance_id;
  out.info["app_cert"] = "";  // no KMS, no app certificate
  out.info["app_name"] = app_name_of(app_compose);
  out.info["device_id"] = device_id;
  out.info["mr_aggregated"] = mr_aggregated;
  out.info["os_image_hash"] = os_image_hash;
  out.info["key_provider_info"] = R"({"name":"none","id":""})";
  out.info["compose_hash"] = compose_hash;
  out.info["tcb_info"] = json::serialize(tcb);
  out.info["simulated"] = true;
  return out;
}

}  // namespace pi::devtee
