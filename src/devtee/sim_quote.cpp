#include "devtee/sim_quote.hpp"

#include <boost/json.hpp>
#include <cstring>

namespace pi::devtee {
namespace {

namespace json = boost::json;

constexpr std::uint8_t kIntelQeVendorId[16] = {0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
                                               0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
constexpr std::uint32_t kRuntimeEventType = 0x08000001;

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
template <typename C>
void put(Bytes& b, const C& c) {
  b.insert(b.end(), std::begin(c), std::end(c));
}
void zeros(Bytes& b, std::size_t n) { b.insert(b.end(), n, 0); }

crypto::Digest48 label48(std::string_view label) { return crypto::sha384(as_bytes(label)); }

SimEvent runtime_event(std::string name, Bytes payload) {
  SimEvent e;
  e.imr = 3;
  e.event_type = kRuntimeEventType;
  e.event = std::move(name);
  e.payload = std::move(payload);
  Bytes m;
  put32(m, e.event_type);
  m.push_back(':');
  put(m, e.event);
  m.push_back(':');
  put(m, e.payload);
  e.digest = crypto::sha384(m);
  return e;
}

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

// SGX report body of the simulated TD quoting enclave.
Bytes qe_report(const std::array<std::uint8_t, 32>& report_data_hash) {
  Bytes r;
  std::array<std::uint8_t, 16> cpu_svn{};
  std::copy(kSimCpuSvn.begin(), kSimCpuSvn.end(), cpu_svn.begin());
  put(r, cpu_svn);
  put32(r, 0);  // misc_select
  zeros(r, 28);
  std::array<std::uint8_t, 16> attributes{0x11};  // INIT | MODE64BIT, not DEBUG
  put(r, attributes);
  put(r, crypto::sha256(as_bytes(std::string_view("SIMULATED dev-tee QE mrenclave"))));
  zeros(r, 32);
  put(r, sim_qe_mr_signer());
  zeros(r, 96);
  put16(r, kSimQeIsvProdId);
  put16(r, kSimQeIsvSvn);
  zeros(r, 60);
  put(r, report_data_hash);
  zeros(r, 32);
  return r;
}

}  // namespace

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

std::vector<SimEvent> sim_event_log(const std::string& app_compose) {
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
  ev.push_back(runtime_event("system-preparing", {}));
  ev.push_back(runtime_event("app-id", Bytes(app_id.begin(), app_id.begin() + 20)));
  ev.push_back(runtime_event("compose-hash", Bytes(compose_hash.begin(), compose_hash.end())));
  ev.push_back(runtime_event("instance-id", Bytes(instance_id.begin(), instance_id.begin() + 20)));
  ev.push_back(runtime_event("boot-mr-done", {}));
  ev.push_back(runtime_event("os-image-hash", Bytes(os_image.begin(), os_image.end())));
  ev.push_back(runtime_event("system-ready", {}));
  return ev;
}

SimMeasurements sim_measurements(const std::vector<SimEvent>& events) {
  SimMeasurements m;
  m.mrtd = label48("SIMULATED dev-tee MRTD");
  for (const auto& e : events) {
    if (e.imr > 3) continue;
    Bytes buf(m.rtmr[e.imr].begin(), m.rtmr[e.imr].end());
    put(buf, e.digest);
    m.rtmr[e.imr] = crypto::sha384(buf);
  }
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
  Bytes q;
  // header
  put16(q, 4);               // version
  put16(q, 2);               // attestation key type: ECDSA-256-with-P-256
  put32(q, 0x00000081);      // TEE type: TDX
  put16(q, 0);               // reserved
  put16(q, 0);               // reserved
  put(q, kIntelQeVendorId);  // QE vendor id
  std::array<std::uint8_t, 20> user_data{};
  std::memcpy(user_data.data(), "SIMULATED dev-tee", 17);
  put(q, user_data);
  // TD report body (TD 1.0)
  put(q, kSimTeeTcbSvn);
  put(q, label48("SIMULATED dev-tee MRSEAM"));                           // mr_seam
  zeros(q, 48);                                                          // mr_signer_seam (Intel's module: zero)
  zeros(q, 8);                                                           // seam_attributes
  std::array<std::uint8_t, 8> td_attributes{0, 0, 0, 0x10, 0, 0, 0, 0};  // SEPT_VE_DISABLE, not DEBUG
  put(q, td_attributes);
  std::array<std::uint8_t, 8> xfam{0xe7, 0x02, 0x06, 0, 0, 0, 0, 0};
  put(q, xfam);
  put(q, m.mrtd);
  zeros(q, std::size_t{48} * 3);  // mr_config_id, mr_owner, mr_owner_config
  for (const auto& r : m.rtmr) put(q, r);
  put(q, report_data);
  const std::size_t signed_len = q.size();  // 48 + 584

  auto ak_pub = p256_public_raw(pki.attestation_key_pem);
  auto quote_sig = sign_p256_raw(pki.attestation_key_pem, ByteView(q.data(), signed_len));

  // 32 bytes, as Intel's QE produces (dcap-qvl rejects other lengths)
  Bytes qe_auth = text_bytes("SIMULATED dev-tee QE auth data..");
  static_assert(sizeof("SIMULATED dev-tee QE auth data..") - 1 == 32);
  Bytes h;
  put(h, ak_pub);
  put(h, qe_auth);
  Bytes qe_rep = qe_report(crypto::sha256(h));
  auto qe_sig = sign_p256_raw(pki.pck_key_pem, qe_rep);
  std::string chain = pki.pck_chain_pem();

  Bytes inner;
  put(inner, qe_rep);
  put(inner, qe_sig);
  put16(inner, static_cast<std::uint16_t>(qe_auth.size()));
  put(inner, qe_auth);
  put16(inner, 5);  // PCK certificate chain
  put32(inner, static_cast<std::uint32_t>(chain.size()));
  put(inner, chain);

  Bytes sig;
  put(sig, quote_sig);
  put(sig, ak_pub);
  put16(sig, 6);  // QE report certification data
  put32(sig, static_cast<std::uint32_t>(inner.size()));
  put(sig, inner);

  put32(q, static_cast<std::uint32_t>(sig.size()));
  put(q, sig);
  return q;
}

SimEvidence make_sim_evidence(const TestPki& pki, const std::array<std::uint8_t, 64>& report_data,
                              const std::string& app_compose) {
  auto events = sim_event_log(app_compose);
  auto m = sim_measurements(events);
  SimEvidence out;
  out.quote = build_sim_quote(pki, m, report_data);
  out.event_log = event_log_json(events);
  auto compose_hash = to_hex(crypto::sha256(as_bytes(app_compose)));
  json::object tcb;
  tcb["mrtd"] = to_hex(m.mrtd);
  for (int i = 0; i < 4; ++i) tcb["rtmr" + std::to_string(i)] = to_hex(m.rtmr[static_cast<std::size_t>(i)]);
  tcb["app_compose"] = app_compose;
  tcb["compose_hash"] = compose_hash;
  tcb["event_log"] = json::parse(out.event_log);
  for (const auto& e : events) {
    if (e.event == "app-id") out.info["app_id"] = to_hex(e.payload);
    if (e.event == "instance-id") out.info["instance_id"] = to_hex(e.payload);
    if (e.event == "os-image-hash") out.info["os_image_hash"] = to_hex(e.payload);
  }
  out.info["app_name"] = "dev-tee-simulated-app";
  out.info["compose_hash"] = compose_hash;
  out.info["tcb_info"] = json::serialize(tcb);
  out.info["simulated"] = true;
  return out;
}

}  // namespace pi::devtee
