// `private-inference verify attestation|response`: the client-side verifier (docs/verifier.md).
#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "crypto/openssl.hpp"
#include "crypto/random.hpp"
#include "protocol/signing.hpp"
#include "verify/attestation.hpp"
#include "verify/collateral_fetch.hpp"
#include "verify/http_client.hpp"
#include "verify/render.hpp"
#include "verify/response.hpp"

namespace pi::cli {
namespace {

namespace json = boost::json;
using namespace pi::verify;

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CommonOpts {
  std::string url;
  std::string signing_algo = "ecdsa";
  std::string collateral_path;
  std::string pccs_url;
  std::int64_t now = 0;
  bool nras = false, no_nras = false;
  std::string jwks;
  std::string nras_response;
  std::string policy_path;
  bool json_out = false;
  bool offline = false;
  std::string token;
  std::string cache_dir;
  int timeout_s = 30;
  std::vector<std::string> gpu_extra_roots;  // PEM files of TEST roots (simulated NVML); checks become SIMULATED
  std::string trust_simulated;               // dev-tee --pki state dir: TEST TDX root (+ its collateral)
  std::string require_gpu;                   // --require-gpu [N]: "" (flag alone) means 1
  CLI::Option* require_gpu_opt = nullptr;
  bool accept_ecdsa_v01 = false;  // verify response: accept v in {0,1} besides 27/28
};

struct AttOpts {
  CommonOpts c;
  std::string report_path;
  std::string nonce;
};

struct RespOpts {
  CommonOpts c;
  std::string id, request_path, response_path;
};

std::string read_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError(fmt::format("cannot read {} file '{}'", what, path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void add_common(CLI::App* sub, CommonOpts& o) {
  sub->add_option("--signing-algo", o.signing_algo, "ecdsa or ed25519")->check(CLI::IsMember({"ecdsa", "ed25519"}));
  sub->add_option("--collateral", o.collateral_path,
                  "Intel collateral JSON (dcap-qvl QuoteCollateralV3); fully offline for the quote");
  sub->add_option("--pccs-url", o.pccs_url, "fetch collateral from this PCCS instead of Intel PCS");
  sub->add_option("--now", o.now, "pin the verification time (unix seconds)");
  auto* n = sub->add_flag("--nras", o.nras, "submit GPU evidence to NVIDIA NRAS (network)");
  auto* nn = sub->add_flag("--no-nras", o.no_nras, "never submit GPU evidence to NRAS");
  n->excludes(nn);
  sub->add_option("--jwks", o.jwks, "NVIDIA JWKS file for verifying NRAS tokens offline");
  sub->add_option("--nras-response", o.nras_response, "a recorded NRAS answer to verify instead of submitting");
  sub->add_option("--policy", o.policy_path, "policy JSON pinning TCB statuses, compose/OS hashes, MRTD, RTMR0-2");
  sub->add_flag("--json", o.json_out, "print the result as JSON (docs/verifier.md)");
  sub->add_flag("--offline", o.offline, "never touch the network (checks that need it are skipped and say so)");
  sub->add_option("--token", o.token, "bearer token for the proxy (env TOKEN)")->envname("TOKEN");
  sub->add_option("--cache-dir", o.cache_dir,
                  "collateral cache folder (default ~/.cache/private-inference/collateral)");
  sub->add_option("--timeout", o.timeout_s, "network timeout in seconds")->check(CLI::Range(1, 600));
  sub->add_option("--gpu-test-root", o.gpu_extra_roots,
                  "PEM file of a TEST GPU root to trust besides NVIDIA's (simulated NVML); every check that relies "
                  "on it is labelled SIMULATED")
      ->check(CLI::ExistingFile);
  sub->add_option("--trust-simulated", o.trust_simulated,
                  "dev-tee state DIR (dev-tee --pki): trust DIR/pki/root.cert.pem as a TEST TDX root besides Intel's "
                  "and use DIR/collateral.json unless --collateral is given; every check that relies on it is "
                  "labelled SIMULATED (not a security proof)")
      ->check(CLI::ExistingDirectory);
  o.require_gpu_opt = sub->add_option("--require-gpu", o.require_gpu,
                                      "fail unless at least N GPUs verify (N default 1; also policy gpu.min_count)")
                          ->expected(0, 1);
}

// DIR/pki/root.cert.pem (PEM) as DER. Throws UsageError when missing or not a certificate.
Bytes load_test_root(const std::string& dir) {
  std::string path = dir + "/pki/root.cert.pem";
  std::string pem = read_file(path, "--trust-simulated root");
  try {
    return crypto::ossl::cert_to_der(*crypto::ossl::cert_from_pem(pem));
  } catch (const crypto::ossl::Error&) {
    throw UsageError(fmt::format("--trust-simulated: {} is not a PEM certificate", path));
  }
}

// With --trust-simulated: label the result so nobody mistakes it for hardware evidence.
void label_simulated(Report& rep) {
  bool any = false;
  for (const auto& c : rep.checks) any = any || c.simulated;
  if (any)
    rep.fact("simulated",
             "simulated hardware: not a security proof (checks marked [simulated] chain to a "
             "TEST root given with --trust-simulated or --gpu-test-root)");
}

std::string trim_url(std::string u) {
  while (!u.empty() && u.back() == '/') u.pop_back();
  return u;
}

std::vector<std::pair<std::string, std::string>> auth_headers(const CommonOpts& c) {
  if (c.token.empty()) return {};
  return {{"Authorization", "Bearer " + c.token}};
}

AttestationOptions attestation_options(const CommonOpts& c, bool network_allowed) {
  AttestationOptions o;
  if (c.require_gpu_opt && c.require_gpu_opt->count() > 0) {
    int n = 1;
    if (!c.require_gpu.empty()) {
      std::size_t used = 0;
      try {
        n = std::stoi(c.require_gpu, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != c.require_gpu.size() || n < 0 || n > 1024)
        throw UsageError("--require-gpu takes a number of GPUs from 0 to 1024 (default 1)");
    }
    o.require_gpus = n;
  }
  o.now = c.now ? c.now
                : std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                      .count();
  o.expected_signing_algo = c.signing_algo;
  std::string collateral_path = c.collateral_path;
  if (collateral_path.empty() && !c.trust_simulated.empty()) collateral_path = c.trust_simulated + "/collateral.json";
  if (!collateral_path.empty()) {
    try {
      o.collateral = parse_collateral_json(read_file(collateral_path, "collateral"));
    } catch (const UsageError&) {
      throw;
    } catch (const std::exception& e) {
      throw UsageError(fmt::format("{} {}: {}",
                                   c.collateral_path.empty() ? "--trust-simulated collateral" : "--collateral",
                                   collateral_path, e.what()));
    }
    if (!c.trust_simulated.empty()) o.collateral->simulated_root_der = load_test_root(c.trust_simulated);
  } else if (network_allowed) {
    CollateralSource src;
    src.pccs_url = c.pccs_url;
    src.cache_dir = c.cache_dir.empty() ? default_collateral_cache_dir() : c.cache_dir;
    src.now = o.now;
    o.fetch_collateral = [src](const Quote& q, std::string& why) { return fetch_collateral(q, src, why); };
  }
  if (!c.policy_path.empty()) {
    try {
      o.policy = parse_policy_json(read_file(c.policy_path, "policy"));
    } catch (const UsageError&) {
      throw;
    } catch (const std::exception& e) {
      throw UsageError(fmt::format("--policy {}: {}", c.policy_path, e.what()));
    }
  }
  o.gpu.now = o.now;
  o.gpu.jwks_path = c.jwks;
  o.gpu.nras_response_path = c.nras_response;
  o.gpu.timeout_s = c.timeout_s;
  for (const auto& path : c.gpu_extra_roots) o.gpu.extra_root_pems.push_back(read_file(path, "GPU test root"));
  o.gpu.nras = network_allowed && !c.no_nras && (c.nras || !c.url.empty());
  return o;
}

// Fetches /v1/attestation/report with a fresh nonce. Returns nullopt after adding a failed check.
std::optional<json::value> fetch_attestation(const CommonOpts& c, const std::string& nonce, Report& rep) {
  std::string url =
      fmt::format("{}/v1/attestation/report?nonce={}&signing_algo={}", trim_url(c.url), nonce, c.signing_algo);
  const char* title = "the server answered the attestation request";
  try {
    auto res = http_get(url, auth_headers(c), c.timeout_s);
    if (res.status != 200) {
      rep.add(Check{Group::Hardware, "attestation.fetch", title, Status::Fail,
                    fmt::format("GET {} answered HTTP {}: {}", url, res.status, res.body.substr(0, 300))});
      return std::nullopt;
    }
    boost::system::error_code ec;
    auto v = json::parse(res.body, ec);
    if (ec || !v.is_object()) {
      rep.add(Check{Group::Hardware, "attestation.fetch", title, Status::Fail, "the answer is not a JSON object"});
      return std::nullopt;
    }
    rep.add(Check{Group::Hardware, "attestation.fetch", title, Status::Pass, "GET " + url});
    return v;
  } catch (const HttpError& e) {
    rep.add(Check{Group::Hardware, "attestation.fetch", title, Status::Fail, e.what()});
    return std::nullopt;
  }
}

void merge_into(Report& dst, Report&& src) {
  for (auto& c : src.checks) dst.checks.push_back(std::move(c));
  for (auto& f : src.facts) dst.facts.push_back(std::move(f));
  if (src.gpus) dst.gpus = std::move(src.gpus);
}

int emit(const Report& r, const char* command, bool json_out) {
  bool simulated = std::any_of(r.checks.begin(), r.checks.end(), [](const Check& c) { return c.simulated; });
  if (json_out) {
    auto o = render_json(r, command);
    o["simulated"] = simulated;
    std::cout << json::serialize(o) << std::endl;
  } else {
    std::cout << render_text(r, command);
    if (simulated) std::cout << "summary: simulated hardware: not a security proof\n";
  }
  return exit_code(r);
}

std::string fresh_nonce() { return to_hex(crypto::random_bytes(32)); }

int run_attestation(const AttOpts& a) {
  if (a.c.url.empty() == a.report_path.empty()) throw UsageError("give exactly one of --url or --report");
  if (!a.nonce.empty() && !protocol::parse_nonce(a.nonce)) throw UsageError("--nonce must be exactly 64 hex digits");
  bool network = !a.c.offline;
  if (a.c.offline && !a.c.url.empty()) throw UsageError("--offline cannot fetch --url");
  if (a.c.offline && a.c.nras) throw UsageError("--nras needs the network; drop --offline");
  auto opts = attestation_options(a.c, network);
  Report rep;
  std::optional<json::value> doc;
  if (!a.c.url.empty()) {
    std::string nonce = a.nonce.empty() ? fresh_nonce() : a.nonce;
    opts.expected_nonce_hex = nonce;
    doc = fetch_attestation(a.c, nonce, rep);
  } else {
    std::string text = read_file(a.report_path, "report");
    boost::system::error_code ec;
    doc = json::parse(text, ec);
    if (ec) throw UsageError(fmt::format("--report {} is not JSON: {}", a.report_path, ec.message()));
    if (!a.nonce.empty()) opts.expected_nonce_hex = a.nonce;
  }
  if (doc) {
    auto out = verify_attestation(*doc, opts);
    merge_into(rep, std::move(out.report));
  }
  if (!network) rep.fact("network", "offline: nothing was fetched");
  label_simulated(rep);
  return emit(rep, "attestation", a.c.json_out);
}

int run_response(const RespOpts& r) {
  if (r.c.url.empty()) throw UsageError("--url is required");
  if (r.c.offline) throw UsageError("verify response fetches the signature and a fresh attestation: drop --offline");
  std::string request = read_file(r.request_path, "request");
  std::string response = read_file(r.response_path, "response");
  auto opts = attestation_options(r.c, true);
  Report rep;
  // 1. a fresh attestation (its checks come first: hardware → binding → code → GPU)
  std::string nonce = fresh_nonce();
  opts.expected_nonce_hex = nonce;
  std::optional<AttestationOutcome> att;
  if (auto doc = fetch_attestation(r.c, nonce, rep)) {
    att = verify_attestation(*doc, opts);
    Report copy = att->report;
    merge_into(rep, std::move(copy));
  }
  // 2. the signature record
  std::string url = fmt::format("{}/v1/signature/{}?signing_algo={}", trim_url(r.c.url), r.id, r.c.signing_algo);
  const char* title = "the proxy returned the signature record for this id";
  json::value sig;
  bool have_sig = false;
  try {
    auto res = http_get(url, auth_headers(r.c), r.c.timeout_s);
    boost::system::error_code ec;
    if (res.status != 200) {
      rep.add(Check{Group::Response, "response.signature_fetch", title, Status::Fail,
                    fmt::format("GET {} answered HTTP {}: {}", url, res.status, res.body.substr(0, 300))});
    } else if (sig = json::parse(res.body, ec); ec || !sig.is_object()) {
      rep.add(Check{Group::Response, "response.signature_fetch", title, Status::Fail, "the answer is not JSON"});
    } else {
      have_sig = true;
      rep.add(Check{Group::Response, "response.signature_fetch", title, Status::Pass, "GET " + url});
    }
  } catch (const HttpError& e) {
    rep.add(Check{Group::Response, "response.signature_fetch", title, Status::Fail, e.what()});
  }
  ResponseOptions ro;
  ro.accept_ecdsa_v01 = r.c.accept_ecdsa_v01;
  if (have_sig) check_response(request, response, sig, r.c.signing_algo, att, ro, rep);
  label_simulated(rep);
  return emit(rep, "response", r.c.json_out);
}

}  // namespace

Runner register_verify(CLI::App& app) {
  auto* sub = app.add_subcommand("verify", "Verify attestation reports and signed responses");
  sub->require_subcommand(1);
  auto att = std::make_shared<AttOpts>();
  auto resp = std::make_shared<RespOpts>();

  auto* a =
      sub->add_subcommand("attestation", "Verify a TDX attestation report (fetched with a fresh nonce, or a file)");
  a->add_option("--url", att->c.url, "proxy base URL, e.g. http://127.0.0.1:8000");
  a->add_option("--report", att->report_path, "attestation report JSON file (offline)");
  a->add_option("--nonce", att->nonce, "64 hex digits (default: a fresh random nonce with --url)");
  add_common(a, att->c);

  auto* r = sub->add_subcommand("response", "Verify a signed response against a freshly verified attestation");
  r->add_option("--url", resp->c.url, "proxy base URL")->required();
  r->add_option("--id", resp->id, "the response id (or X-Signature-Id)")->required();
  r->add_option("--request", resp->request_path, "file with the exact request body bytes sent")->required();
  r->add_option("--response", resp->response_path, "file with the exact response body bytes received")->required();
  r->add_flag("--accept-ecdsa-v01", resp->c.accept_ecdsa_v01,
              "also accept ECDSA signatures whose v byte is 0/1 instead of 27/28 (other signers; high-s is never "
              "accepted)");
  add_common(r, resp->c);

  return [a, r, att, resp]() -> int {
    try {
      if (a->parsed()) return run_attestation(*att);
      if (r->parsed()) return run_response(*resp);
    } catch (const UsageError& e) {
      std::cerr << "verify: " << e.what() << std::endl;
      return 2;
    }
    return 2;
  };
}

}  // namespace pi::cli
