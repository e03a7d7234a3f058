// check_gpu_evidence: the verifier's NVIDIA GPU checks (see docs/verifier-gpu.md for every check id).
#include "verify/gpu.hpp"

#include <cctype>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "protocol/gpu_spdm.hpp"
#include "protocol/report.hpp"
#include "verify/gpu_cert.hpp"
#include "verify/nras.hpp"

namespace pi::verify {

namespace {

using namespace pi::verify::gpu;
using namespace pi::protocol::gpu;

std::string strip_nul(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s)
    if (c != '\0') out.push_back(c);
  return out;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_hex_text(const pi::Bytes& b) {
  if (b.empty() || b.size() % 2 != 0) return false;
  for (auto c : b)
    if (!std::isxdigit(c) && c != '\n' && c != '\r') return false;
  return true;
}

struct Ctx {
  Report& report;
  void add(std::string id, std::string title, Status st, std::string detail, bool simulated = false,
           bool enforced = true) {
    report.add(Check{Group::Gpu, std::move(id), std::move(title), st, std::move(detail), enforced, simulated});
  }
  void pass_fail(std::string id, std::string title, bool ok, std::string detail, bool simulated = false) {
    add(std::move(id), std::move(title), ok ? Status::Pass : Status::Fail, std::move(detail), simulated);
  }
  void fact(std::string k, std::string v) { report.facts.emplace_back(std::move(k), std::move(v)); }
};

struct Item {
  std::vector<X509Ptr> chain;
  SpdmReport report;
  std::optional<std::string> claimed_arch;
  std::optional<std::string> item_nonce;
  std::string evidence_b64, certificate_b64;  // as received (NUL-stripped), for NRAS submission
  std::size_t index = 0;                      // position in the evidence list (NRAS names it GPU-<index>)
};

// One entry of the evidence list, decoded: base64 → PEM chain and SPDM report.
Item decode_item(const pi::protocol::NvidiaPayload::Entry& e) {
  if (!e.item) throw ParseError(e.error);
  const auto& src = *e.item;
  Item it;
  it.certificate_b64 = strip_nul(src.certificate);
  it.evidence_b64 = strip_nul(src.evidence);
  auto pem = base64_decode(it.certificate_b64);
  if (!pem) throw ParseError("\"certificate\" is not base64");
  it.chain = parse_pem_chain(std::string_view(reinterpret_cast<const char*>(pem->data()), pem->size()));
  auto rep = base64_decode(it.evidence_b64);
  if (!rep) throw ParseError("\"evidence\" is not base64");
  if (is_hex_text(*rep)) {  // some tools base64 the hex text of the report
    auto bin = pi::from_hex(std::string_view(reinterpret_cast<const char*>(rep->data()), rep->size()));
    if (bin) rep = std::move(bin);
  }
  it.report = parse_spdm_report(*rep);
  it.claimed_arch = src.arch;
  it.item_nonce = src.nonce;
  return it;
}

void check_one(Ctx& cx, std::size_t n, const Item& it, std::string_view expected_nonce, bool nonce_ok_format,
               const std::optional<std::string>& payload_arch, const GpuOptions& opts, std::int64_t now) {
  const std::string p = "gpu." + std::to_string(n) + ".";
  const std::string gpu = "GPU " + std::to_string(n);

  // Nonce: the request's 32 bytes are our challenge; the item's own "nonce" (4-key form) must agree.
  {
    std::string got = pi::to_hex(it.report.request_nonce);
    bool ok = nonce_ok_format && got == expected_nonce;
    std::string detail = !nonce_ok_format ? "expected nonce is not 64 hex digits"
                         : ok             ? "SPDM request nonce equals our nonce " + got
                              : "SPDM request nonce " + got + " differs from our nonce " + std::string(expected_nonce);
    if (ok && it.item_nonce && lower(*it.item_nonce) != expected_nonce) {
      ok = false;
      detail = "evidence item's \"nonce\" " + *it.item_nonce + " differs from our nonce " + std::string(expected_nonce);
    }
    cx.pass_fail(p + "nonce", gpu + ": the SPDM request carries our nonce", ok, detail);
  }

  auto sig = verify_report_signature(it.report, *it.chain.front());
  cx.pass_fail(p + "spdm_signature", gpu + ": SPDM measurements are signed by the device's leaf key (P-384)", sig.ok,
               sig.detail);

  auto chain = verify_chain(it.chain, opts.extra_root_pems);
  cx.pass_fail(p + "cert_chain", gpu + ": device certificate chain leads to NVIDIA's Device Identity root", chain.ok,
               chain.detail, chain.ok && chain.anchored_in_extra_root);

  auto validity = check_validity(it.chain, now);
  cx.pass_fail(p + "cert_validity", gpu + ": every certificate of the chain is valid at now", validity.ok,
               validity.detail, chain.ok && chain.anchored_in_extra_root);

  // Architecture: from signed evidence only (GPU_INFO opaque field) and the verified chain's chip names.
  {
    auto id = gpu_arch_id(it.report);
    std::optional<std::string> from_report = id ? arch_from_id(*id) : std::nullopt;
    auto from_chain = arch_from_chain(it.chain);
    std::ostringstream d;
    bool ok = true;
    std::string arch;
    if (from_chain && *from_chain == "CONFLICT") {
      ok = false;
      d << "certificate chain names chips of different architectures";
    } else if (from_report && from_chain && *from_report != *from_chain) {
      ok = false;
      d << "report GPU_INFO says " << *from_report << " but the certificate chain says " << *from_chain;
    } else if (!from_report && !from_chain) {
      ok = false;
      d << "architecture cannot be determined from the evidence";
      if (id) d << " (unknown GPU_INFO architecture id 0x" << std::hex << *id << std::dec << ")";
    } else {
      arch = from_report ? *from_report : *from_chain;
      d << "detected " << arch << " from";
      if (from_report) d << " GPU_INFO (arch id 0x" << std::hex << *id << std::dec << ")";
      if (from_report && from_chain) d << " and";
      if (from_chain) d << " certificate chip name";
    }
    cx.pass_fail(p + "arch",
                 gpu + ": architecture is detected consistently from the signed report and the certificate chain", ok,
                 d.str());
    cx.fact(p + "arch", arch.empty() ? "UNKNOWN" : arch);
    // The payload's own "arch" is a claim, not evidence (vllm-proxy hard-codes HOPPER): reported, not enforced.
    auto claimed = it.claimed_arch ? it.claimed_arch : payload_arch;
    if (claimed && !arch.empty()) {
      std::string c = *claimed;
      for (auto& ch : c) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      cx.add(p + "arch_claim", gpu + ": the payload's \"arch\" matches the detected architecture",
             c == arch ? Status::Pass : Status::Fail,
             c == arch ? "payload claims " + *claimed
                       : "payload claims " + *claimed + " but the evidence is " + arch + "; the detected " + arch +
                             " is used",
             false, false);
    }
  }

  cx.fact(p + "driver_version", driver_version(it.report).value_or("unknown"));
  cx.fact(p + "vbios_version", vbios_version(it.report).value_or("unknown"));
  auto ff = feature_flag(it.report);
  auto pp = protected_pcie(it.report);
  bool ppcie = ff ? *ff == 2 : pp.value_or(false);
  cx.fact(p + "ppcie", ppcie ? "true" : "false");
  if (ff) cx.fact(p + "feature_flag", feature_flag_name(*ff));
  if (auto proj = opaque_string(it.report, OpaqueType::Project)) cx.fact(p + "project", *proj);
  cx.fact(p + "measurement_blocks", std::to_string(it.report.blocks.size()));
  cx.fact(p + "leaf_subject", subject_of(*it.chain.front()));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw nras::Error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// NRAS names the GPUs GPU-0.. in submission order: its per-GPU driver/VBIOS versions must be those of the
// evidence we verified locally (a signed answer about other evidence with the same nonce must not pass).
void check_answer_matches_evidence(Ctx& cx, const nras::Answer& answer, const std::vector<Item>& items) {
  for (const auto& [name, token] : answer.detached) {
    const std::string id = "gpu.nras." + name + ".evidence_match";
    const std::string title = "NRAS " + name + " claims match the locally verified evidence (driver, VBIOS)";
    const Item* item = nullptr;
    if (name.rfind("GPU-", 0) == 0) {
      try {
        std::size_t k = std::stoul(name.substr(4));
        for (const auto& it : items)
          if (it.index == k) item = &it;
      } catch (const std::exception&) {
      }
    }
    if (!item) {
      cx.add(id, title, Status::Fail, "no locally decoded evidence item corresponds to " + name);
      continue;
    }
    std::vector<std::string> problems, seen;
    const auto& claims = token.claims;  // a structured binding cannot be captured portably (C++20)
    auto compare = [&](const char* claim, std::optional<std::string> local, const char* what) {
      auto c = claims.find(claim);
      if (c == claims.end() || !c->value().is_string()) return;
      std::string nras_v(c->value().as_string());
      if (!local || lower(*local) != lower(nras_v)) {
        problems.push_back(std::string(what) + " NRAS " + nras_v + " vs evidence " + local.value_or("(none)"));
      } else {
        seen.push_back(std::string(what) + " " + nras_v);
      }
    };
    compare("x-nvidia-gpu-driver-version", driver_version(item->report), "driver");
    compare("x-nvidia-gpu-vbios-version", vbios_version(item->report), "VBIOS");
    if (!problems.empty()) {
      std::string d;
      for (const auto& p : problems) d += (d.empty() ? "" : "; ") + p;
      cx.add(id, title, Status::Fail, d);
    } else if (seen.empty()) {
      cx.add(id, title, Status::Skipped, "the token carries no driver/VBIOS version claims", false, false);
    } else {
      std::string d;
      for (const auto& p : seen) d += (d.empty() ? "" : ", ") + p;
      cx.add(id, title, Status::Pass, d + " (evidence item " + std::to_string(item->index) + ")");
    }
  }
}

void run_nras(Ctx& cx, const std::vector<Item>& items, const std::string& arch, std::string_view expected_nonce,
              const GpuOptions& opts, std::int64_t now) {
  boost::json::value answer_json;
  std::string source;
  if (!opts.nras_response_path.empty()) {
    source = "recorded answer " + opts.nras_response_path;
    try {
      boost::system::error_code ec;
      answer_json = boost::json::parse(read_file(opts.nras_response_path), ec);
      if (ec) throw nras::Error("not JSON: " + ec.message());
    } catch (const std::exception& e) {
      cx.add("gpu.nras", "NRAS answer obtained", Status::Fail, source + ": " + e.what());
      return;
    }
  } else if (opts.nras) {
    std::string url = opts.nras_url.empty() ? std::string(kDefaultNrasUrl) : opts.nras_url;
    std::vector<std::pair<std::string, std::string>> ev;
    ev.reserve(items.size());
    for (const auto& it : items) ev.emplace_back(it.evidence_b64, it.certificate_b64);
    auto body = boost::json::serialize(nras::build_request(expected_nonce, arch, ev));
    auto res = nras::https_request("POST", url, body, opts.timeout_s, opts.nras_tls_ca_pem);
    if (!res.ok) {
      cx.add("gpu.nras", "NRAS answer obtained", Status::Skipped,
             "NRAS skipped: network unavailable (" + res.error + "); only local checks ran", false, false);
      return;
    }
    if (res.status != 200) {
      cx.add("gpu.nras", "NRAS answer obtained", Status::Fail,
             "NRAS " + url + " answered HTTP " + std::to_string(res.status) + ": " + res.body.substr(0, 300));
      return;
    }
    source = "NRAS " + url;
    boost::system::error_code ec;
    answer_json = boost::json::parse(res.body, ec);
    if (ec) {
      cx.add("gpu.nras", "NRAS answer obtained", Status::Fail, source + " answer is not JSON: " + ec.message());
      return;
    }
  } else {
    cx.add("gpu.nras", "NRAS answer obtained", Status::Skipped,
           "NRAS not requested (offline mode): only the local GPU evidence checks ran", false, false);
    return;
  }

  nras::Answer answer;
  try {
    answer = nras::parse_answer(answer_json);
  } catch (const std::exception& e) {
    cx.add("gpu.nras", "NRAS answer obtained", Status::Fail, source + ": " + e.what());
    return;
  }
  cx.add("gpu.nras", "NRAS answer obtained", Status::Pass,
         source + " with " + std::to_string(answer.detached.size()) + " detached token(s)");

  std::optional<nras::Jwks> jwks;
  std::string origin;
  if (!opts.jwks_path.empty()) {
    try {
      jwks = nras::Jwks::load(opts.jwks_path);
      origin = opts.jwks_path;
    } catch (const std::exception& e) {
      cx.add("gpu.nras.jwks", "NVIDIA JWKS loaded", Status::Fail, e.what());
    }
  } else if (opts.nras) {
    auto res = nras::https_request("GET", kDefaultNrasJwksUrl, {}, opts.timeout_s, opts.nras_tls_ca_pem);
    if (res.ok && res.status == 200) {
      try {
        jwks = nras::Jwks::parse(res.body);
        origin = std::string(kDefaultNrasJwksUrl);
      } catch (const std::exception& e) {
        cx.add("gpu.nras.jwks", "NVIDIA JWKS loaded", Status::Fail, e.what());
      }
    } else {
      cx.add("gpu.nras.jwks", "NVIDIA JWKS loaded", Status::Fail,
             "cannot fetch " + std::string(kDefaultNrasJwksUrl) + ": " +
                 (res.ok ? "HTTP " + std::to_string(res.status) : res.error));
    }
  }
  nras::check_answer(answer, jwks ? &*jwks : nullptr, origin, expected_nonce, now, cx.report);
  check_answer_matches_evidence(cx, answer, items);
}

}  // namespace

void check_gpu_evidence(const boost::json::value& nvidia_payload, std::string_view expected_nonce_hex,
                        const GpuOptions& opts, Report& report) {
  Ctx cx{report};
  const std::int64_t now = opts.now ? *opts.now : static_cast<std::int64_t>(std::time(nullptr));
  std::string expected = lower(std::string(expected_nonce_hex));
  if (expected.rfind("0x", 0) == 0) expected = expected.substr(2);
  const bool nonce_ok_format = pi::is_hex_of_length(expected, 64);

  pi::protocol::NvidiaPayload::Decoded payload;
  try {
    payload = pi::protocol::NvidiaPayload::decode(nvidia_payload);
    if (payload.entries.empty())
      throw pi::protocol::ShapeError("nvidia_payload.evidence_list", "the evidence list is empty");
  } catch (const std::exception& e) {
    cx.add("gpu.payload", "nvidia_payload decodes to a GPU evidence list", Status::Fail, e.what());
    return;
  }
  cx.add("gpu.payload", "nvidia_payload decodes to a GPU evidence list", Status::Pass,
         std::to_string(payload.entries.size()) + " evidence item(s)");
  cx.fact("gpu.count", std::to_string(payload.entries.size()));
  if (payload.nonce) {
    bool ok = nonce_ok_format && lower(*payload.nonce) == expected;
    cx.pass_fail("gpu.payload_nonce", "nvidia_payload's nonce is our nonce", ok,
                 ok ? "payload nonce equals our nonce"
                    : "payload nonce " + *payload.nonce + " differs from our nonce " + std::string(expected_nonce_hex));
  }

  std::vector<Item> items;
  std::string arch;
  bool all_decoded = true;
  for (std::size_t n = 0; n < payload.entries.size(); ++n) {
    const std::string p = "gpu." + std::to_string(n) + ".";
    Item it;
    try {
      it = decode_item(payload.entries[n]);
    } catch (const std::exception& e) {
      all_decoded = false;
      cx.add(p + "evidence", "GPU " + std::to_string(n) + ": evidence item decodes (certificate chain + SPDM report)",
             Status::Fail, e.what());
      continue;
    }
    cx.add(p + "evidence", "GPU " + std::to_string(n) + ": evidence item decodes (certificate chain + SPDM report)",
           Status::Pass,
           std::to_string(it.chain.size()) + " certificates, " + std::to_string(it.report.blocks.size()) +
               " measurement blocks, " + std::to_string(it.report.opaque.size()) + " opaque fields");
    check_one(cx, n, it, expected, nonce_ok_format, payload.arch, opts, now);
    if (arch.empty()) {
      for (const auto& [k, v] : report.facts)
        if (k == p + "arch" && v != "UNKNOWN") arch = v;
    }
    it.index = n;
    items.push_back(std::move(it));
  }

  // N GPUs must be N devices: the same device answering twice would otherwise count as two.
  if (items.size() > 1) {
    std::set<std::string> seen;
    std::string dup;
    for (const auto& it : items) {
      auto fp = fingerprint_sha256(*it.chain.front());
      if (!seen.insert(fp).second) dup = subject_of(*it.chain.front());
    }
    cx.pass_fail("gpu.distinct_devices", "every GPU evidence item comes from a different device", dup.empty(),
                 dup.empty() ? std::to_string(items.size()) + " distinct device certificates"
                             : "the same device certificate appears more than once (" + dup + ")");
  }

  if (!all_decoded && opts.nras_response_path.empty() && opts.nras) {
    cx.add("gpu.nras", "NRAS answer obtained", Status::Skipped, "NRAS not contacted: some evidence items do not decode",
           false, false);
    return;
  }
  if (arch.empty() && opts.nras_response_path.empty() && opts.nras) {
    cx.add("gpu.nras", "NRAS answer obtained", Status::Skipped,
           "NRAS not contacted: the GPU architecture could not be detected from the evidence", false, false);
    return;
  }
  run_nras(cx, items, arch, expected, opts, now);
}

GpuSummary summarize_gpus(const Report& report) {
  GpuSummary g;
  for (const auto& [k, v] : report.facts)
    if (k == "gpu.count") g.evidence_items = std::atoi(v.c_str());
  for (const char* id : {"gpu.payload", "gpu.payload_nonce", "gpu.distinct_devices", "gpu.evidence_consistent"}) {
    const Check* c = report.find(id);
    if (c && c->enforced && c->status == Status::Fail) return g;  // the evidence as a whole is not trustworthy
  }
  for (int n = 0; n < g.evidence_items; ++n) {
    const std::string p = "gpu." + std::to_string(n) + ".";
    bool ok = true, simulated = false;
    for (const char* c : {"evidence", "nonce", "spdm_signature", "cert_chain", "cert_validity", "arch"}) {
      const Check* k = report.find(p + c);
      ok = ok && k && k->status == Status::Pass;
      simulated = simulated || (k && k->simulated);
    }
    if (!ok) continue;
    ++g.verified;
    g.simulated = g.simulated || simulated;
    std::string arch = "UNKNOWN";
    for (const auto& [k, v] : report.facts)
      if (k == p + "arch") arch = v;
    g.architectures.push_back(arch);
  }
  return g;
}

}  // namespace pi::verify
