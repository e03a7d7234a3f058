#include "verify/collateral_fetch.hpp"

#include <boost/json.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "verify/http_client.hpp"

namespace pi::verify {
namespace {

namespace json = boost::json;

std::string fetch_ok(const std::string& url, HttpResponse& res) {
  res = http_get(url);
  if (res.status != 200) throw std::runtime_error(fmt::format("GET {} answered HTTP {}", url, res.status));
  return res.body;
}

std::string issuer_chain(const HttpResponse& res, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (auto v = res.header(n); !v.empty()) return url_decode(v);
  throw std::runtime_error("PCS answer has no issuer-chain header");
}

// PCCS serves some CRLs hex-encoded; Intel serves DER.
Bytes crl_bytes(const std::string& body) {
  std::string trimmed = body;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
  if (auto b = from_hex(trimmed); b && !b->empty()) return *b;
  return Bytes(body.begin(), body.end());
}

bool still_valid(const Collateral& c, std::int64_t now) {
  try {
    for (const std::string* s : {&c.tcb_info, &c.qe_identity}) {
      auto o = json::parse(*s).as_object();
      std::string next(o.at("nextUpdate").as_string());
      std::tm tm{};
      if (sscanf(next.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                 &tm.tm_sec) != 6)
        return false;
      tm.tm_year -= 1900;
      tm.tm_mon -= 1;
      if (timegm(&tm) < now) return false;
    }
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

std::string default_collateral_cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/private-inference/collateral";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/private-inference/collateral";
  return {};
}

// The hex "signature" member of a PCS answer (TCB info, QE identity): an error, never a crash, when a
// server sends anything else.
static Bytes signature_of(std::string_view body) {
  const auto doc = json::parse(body);
  const auto* sig = doc.is_object() ? doc.as_object().if_contains("signature") : nullptr;
  if (sig == nullptr || !sig->is_string()) throw std::runtime_error("no string 'signature' in the answer");
  auto bytes = from_hex(std::string_view(sig->as_string()));
  if (!bytes) throw std::runtime_error("the answer's 'signature' is not hex");
  return std::move(*bytes);
}

std::string raw_json_member(std::string_view body, std::string_view key) {
  // Appended rather than concatenated: GCC 12 at -O3 reports a false -Wrestrict on "\"" + std::string.
  std::string needle(1, '"');
  needle += key;
  needle += '"';
  auto k = body.find(needle);
  if (k == std::string_view::npos) throw std::runtime_error("no '" + std::string(key) + "' in the answer");
  auto colon = body.find(':', k + needle.size());
  auto start = body.find('{', colon);
  if (colon == std::string_view::npos || start == std::string_view::npos)
    throw std::runtime_error("'" + std::string(key) + "' is not an object");
  int depth = 0;
  bool in_str = false;
  for (std::size_t i = start; i < body.size(); ++i) {
    char c = body[i];
    if (in_str) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    if (c == '{') ++depth;
    if (c == '}' && --depth == 0) return std::string(body.substr(start, i - start + 1));
  }
  throw std::runtime_error("'" + std::string(key) + "' is not closed");
}

std::optional<Collateral> fetch_collateral(const Quote& q, const CollateralSource& src, std::string& why) {
  PckInfo pck;
  try {
    pck = pck_info_from_quote(q);
  } catch (const std::exception& e) {
    why = std::string("cannot read FMSPC from the quote's PCK certificate: ") + e.what();
    return std::nullopt;
  }
  std::string base = src.pccs_url.empty() ? kIntelPcsUrl : src.pccs_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string cache_file;
  if (!src.cache_dir.empty()) {
    std::string tag;
    for (char c : base) tag += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    cache_file = fmt::format("{}/{}-{}-{}.json", src.cache_dir, pck.fmspc_hex, pck.ca, tag);
    std::ifstream f(cache_file);
    if (f) {
      std::stringstream ss;
      ss << f.rdbuf();
      try {
        Collateral c = parse_collateral_json(ss.str());
        if (still_valid(c, src.now)) {
          why = "cached " + cache_file;
          return c;
        }
      } catch (const std::exception&) {
        // fall through to a fresh fetch
      }
    }
  }
  try {
    Collateral c;
    HttpResponse res;
    std::string url = fmt::format("{}/sgx/certification/v4/pckcrl?ca={}&encoding=der", base, pck.ca);
    c.pck_crl = crl_bytes(fetch_ok(url, res));
    c.pck_crl_issuer_chain = issuer_chain(res, {"sgx-pck-crl-issuer-chain"});

    url = fmt::format("{}/tdx/certification/v4/tcb?fmspc={}", base, pck.fmspc_hex);
    std::string body = fetch_ok(url, res);
    c.tcb_info = raw_json_member(body, "tcbInfo");
    c.tcb_info_signature = signature_of(body);
    c.tcb_info_issuer_chain = issuer_chain(res, {"tcb-info-issuer-chain", "sgx-tcb-info-issuer-chain"});

    url = fmt::format("{}/tdx/certification/v4/qe/identity", base);
    body = fetch_ok(url, res);
    c.qe_identity = raw_json_member(body, "enclaveIdentity");
    c.qe_identity_signature = signature_of(body);
    c.qe_identity_issuer_chain = issuer_chain(res, {"sgx-enclave-identity-issuer-chain"});

    url = src.pccs_url.empty() ? std::string(kIntelRootCrlUrl) : base + "/sgx/certification/v4/rootcacrl";
    c.root_ca_crl = crl_bytes(fetch_ok(url, res));

    why = "fetched from " + base;
    if (!cache_file.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(src.cache_dir, ec);
      std::ofstream out(cache_file, std::ios::trunc);
      if (out) out << collateral_to_json(c);
      if (!out) spdlog::warn("cannot write collateral cache {}", cache_file);
    }
    return c;
  } catch (const std::exception& e) {
    why = std::string("collateral fetch failed (network?): ") + e.what();
    return std::nullopt;
  }
}

}  // namespace pi::verify
