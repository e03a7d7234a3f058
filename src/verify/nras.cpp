#include "verify/nras.hpp"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "crypto/hash.hpp"
#include "crypto/openssl.hpp"

namespace pi::verify::nras {

namespace {

using pi::base64_decode;
namespace ossl = pi::crypto::ossl;

boost::json::object parse_object(std::string_view text, const char* what) {
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec) throw Error(std::string(what) + " is not JSON: " + ec.message());
  if (!v.is_object()) throw Error(std::string(what) + " is not a JSON object");
  return std::move(v.as_object());
}

std::string str_or(const boost::json::object& o, std::string_view key, std::string fallback = {}) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return fallback;
  return std::string(it->value().as_string());
}

std::shared_ptr<EVP_PKEY> ec_key_from_xy(const pi::Bytes& x, const pi::Bytes& y, const std::string& crv) {
  if (crv != "P-384") throw Error("JWK curve " + crv + " is not P-384");
  if (x.size() != 48 || y.size() != 48) throw Error("JWK P-384 coordinates must be 48 bytes each");
  pi::Bytes xy = x;
  xy.insert(xy.end(), y.begin(), y.end());
  auto key = ossl::ec_public_key_from_raw(ossl::Curve::P384, xy);
  if (!key) throw Error("JWK is not a valid P-384 public key");
  return key;
}

std::shared_ptr<EVP_PKEY> key_from_x5c(const std::string& b64) {
  auto der = base64_decode(b64);
  if (!der) throw Error("JWK x5c entry is not base64");
  ossl::X509Ptr cert;
  try {
    cert = ossl::cert_from_der(*der);
  } catch (const ossl::Error&) {
    throw Error("JWK x5c entry is not a DER certificate");
  }
  ossl::PkeyPtr key(X509_get_pubkey(cert.get()));
  if (!key) {
    ERR_clear_error();
    throw Error("JWK x5c certificate has no usable key");
  }
  return key;
}

bool is_ascii_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Jwt parse_jwt(std::string_view compact) {
  Jwt t;
  t.compact = std::string(compact);
  auto d1 = compact.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : compact.find('.', d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos || compact.find('.', d2 + 1) != compact.npos) {
    throw Error("token is not a compact JWS (three dot-separated parts)");
  }
  auto h = base64_decode(compact.substr(0, d1));
  auto p = base64_decode(compact.substr(d1 + 1, d2 - d1 - 1));
  auto s = base64_decode(compact.substr(d2 + 1));
  if (!h || !p || !s) throw Error("token part is not base64url");
  t.header = parse_object(std::string_view(reinterpret_cast<const char*>(h->data()), h->size()), "token header");
  t.claims = parse_object(std::string_view(reinterpret_cast<const char*>(p->data()), p->size()), "token payload");
  t.signature = std::move(*s);
  t.signing_input = std::string(compact.substr(0, d2));
  t.alg = str_or(t.header, "alg");
  t.kid = str_or(t.header, "kid");
  return t;
}

Jwks Jwks::parse(std::string_view json) {
  auto root = parse_object(json, "JWKS");
  auto it = root.find("keys");
  if (it == root.end() || !it->value().is_array()) throw Error("JWKS has no \"keys\" array");
  Jwks out;
  for (const auto& kv : it->value().as_array()) {
    if (!kv.is_object()) throw Error("JWKS key is not an object");
    const auto& k = kv.as_object();
    std::string kid = str_or(k, "kid");
    std::string kty = str_or(k, "kty");
    if (kty != "EC") continue;  // NRAS signs with EC keys only; ignore others
    std::shared_ptr<EVP_PKEY> key;
    if (k.contains("x") && k.contains("y")) {
      auto x = base64_decode(str_or(k, "x"));
      auto y = base64_decode(str_or(k, "y"));
      if (!x || !y) throw Error("JWK " + kid + ": x/y are not base64url");
      key = ec_key_from_xy(*x, *y, str_or(k, "crv"));
    } else if (auto x5c = k.find("x5c"); x5c != k.end() && x5c->value().is_array() &&
                                         !x5c->value().as_array().empty() && x5c->value().as_array()[0].is_string()) {
      key = key_from_x5c(std::string(x5c->value().as_array()[0].as_string()));
    } else {
      throw Error("JWK " + kid + " has neither x/y nor x5c");
    }
    out.keys_.emplace_back(kid, std::move(key));
  }
  return out;
}

Jwks Jwks::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read JWKS file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str());
}

const evp_pkey_st* Jwks::find(std::string_view kid) const {
  for (const auto& [k, key] : keys_)
    if (k == kid) return key.get();
  return nullptr;
}

SigResult verify_jwt(const Jwt& token, const Jwks* jwks) {
  if (token.alg != "ES384") return {SigStatus::UnsupportedAlg, "token alg \"" + token.alg + "\" is not ES384"};
  if (!jwks) return {SigStatus::NoJwks, "no JWKS available (offline: give --jwks FILE); signature NOT verified"};
  const EVP_PKEY* key = jwks->find(token.kid);
  if (!key) return {SigStatus::KeyNotInJwks, "key not in JWKS: kid \"" + token.kid + "\""};
  if (token.signature.size() != 96) {
    return {SigStatus::BadSignature, "ES384 signature is " + std::to_string(token.signature.size()) + " bytes, not 96"};
  }
  if (ossl::ecdsa_verify_raw(ossl::Curve::P384, key, pi::as_bytes(token.signing_input), token.signature))
    return {SigStatus::Ok, "ES384 signature verifies with JWKS key \"" + token.kid + "\""};
  return {SigStatus::BadSignature, "ES384 signature does NOT verify with JWKS key \"" + token.kid + "\""};
}

Answer parse_answer(const boost::json::value& v) {
  // [["JWT", overall], {"GPU-0": token, ...}]
  if (!v.is_array() || v.as_array().size() != 2) {
    throw Error("NRAS answer is not [[\"JWT\", token], {detached tokens}]");
  }
  const auto& a = v.as_array();
  if (!a[0].is_array() || a[0].as_array().size() != 2 || !a[0].as_array()[0].is_string() ||
      a[0].as_array()[0].as_string() != "JWT" || !a[0].as_array()[1].is_string()) {
    throw Error("NRAS answer's first element is not [\"JWT\", token]");
  }
  if (!a[1].is_object()) throw Error("NRAS answer's second element is not an object of detached tokens");
  Answer out;
  out.overall = parse_jwt(a[0].as_array()[1].as_string());
  for (const auto& kv : a[1].as_object()) {
    if (!kv.value().is_string()) throw Error("detached token " + std::string(kv.key()) + " is not a string");
    try {
      out.detached.emplace_back(std::string(kv.key()), parse_jwt(kv.value().as_string()));
    } catch (const Error& e) {
      throw Error("detached token " + std::string(kv.key()) + ": " + e.what());
    }
  }
  return out;
}

Outcome check_eat_nonce(const Jwt& token, std::string_view expected_nonce_hex) {
  std::string got = lower(str_or(token.claims, "eat_nonce"));
  if (got.empty()) return {false, "token has no eat_nonce claim"};
  std::string want = lower(std::string(expected_nonce_hex));
  if (got.size() == want.size() && pi::ct_equal(pi::as_bytes(got), pi::as_bytes(want))) {
    return {true, "eat_nonce equals our nonce " + want};
  }
  return {false, "eat_nonce " + got + " differs from our nonce " + want};
}

Outcome check_overall_result(const Jwt& overall) {
  auto it = overall.claims.find("x-nvidia-overall-att-result");
  if (it == overall.claims.end()) return {false, "x-nvidia-overall-att-result claim missing"};
  if (it->value().is_bool() && it->value().as_bool()) return {true, "x-nvidia-overall-att-result = true"};
  return {false, "x-nvidia-overall-att-result = " + boost::json::serialize(it->value())};
}

Outcome check_submods(const Answer& answer) {
  auto it = answer.overall.claims.find("submods");
  if (it == answer.overall.claims.end() || !it->value().is_object()) return {false, "overall token has no submods"};
  const auto& submods = it->value().as_object();
  if (submods.size() != answer.detached.size()) {
    return {false, "overall token lists " + std::to_string(submods.size()) + " submods but the answer carries " +
                       std::to_string(answer.detached.size()) + " detached tokens"};
  }
  for (const auto& [name, token] : answer.detached) {
    auto s = submods.find(name);
    if (s == submods.end()) return {false, "detached token " + name + " is not listed in submods"};
    // ["DIGEST", ["SHA-256", "<hex>"]]
    const auto& v = s->value();
    if (!v.is_array() || v.as_array().size() != 2 || !v.as_array()[0].is_string() ||
        v.as_array()[0].as_string() != "DIGEST" || !v.as_array()[1].is_array() ||
        v.as_array()[1].as_array().size() != 2 || !v.as_array()[1].as_array()[0].is_string() ||
        !v.as_array()[1].as_array()[1].is_string()) {
      return {false, "submod " + name + " is not [\"DIGEST\", [alg, hex]]"};
    }
    std::string alg(v.as_array()[1].as_array()[0].as_string());
    std::string hex = lower(std::string(v.as_array()[1].as_array()[1].as_string()));
    if (alg != "SHA-256" && alg != "SHA256") return {false, "submod " + name + " uses unsupported digest " + alg};
    if (hex.size() != 64 || !is_ascii_hex(hex)) return {false, "submod " + name + " digest is not 32 bytes of hex"};
    std::string actual = pi::to_hex(pi::crypto::sha256(token.compact));
    if (!pi::ct_equal(pi::as_bytes(actual), pi::as_bytes(hex))) {
      return {false, "submod " + name + " digest " + hex + " does not match SHA-256 of its detached token " + actual};
    }
  }
  return {true, std::to_string(submods.size()) + " submod digest(s) match SHA-256 of the detached tokens"};
}

void check_answer(const Answer& answer, const Jwks* jwks, std::string_view jwks_origin,
                  std::string_view expected_nonce_hex, std::int64_t now, Report& report) {
  auto add = [&](std::string id, std::string title, bool ok, std::string detail, bool enforced = true) {
    report.add(Check{Group::Gpu, std::move(id), std::move(title), ok ? Status::Pass : Status::Fail, std::move(detail),
                     enforced, false});
  };
  auto sig = verify_jwt(answer.overall, jwks);
  std::string origin = jwks ? " (JWKS: " + std::string(jwks_origin) + ")" : std::string();
  add("gpu.nras.signature", "NRAS overall token is signed (ES384) by a key in NVIDIA's JWKS",
      sig.status == SigStatus::Ok, sig.detail + origin);
  auto nonce = check_eat_nonce(answer.overall, expected_nonce_hex);
  add("gpu.nras.eat_nonce", "NRAS overall token's eat_nonce is our nonce", nonce.ok, nonce.detail);
  auto overall = check_overall_result(answer.overall);
  add("gpu.nras.overall_result", "NRAS overall attestation result is true", overall.ok, overall.detail);
  auto sub = check_submods(answer);
  add("gpu.nras.submods", "NRAS submods digests match the per-GPU detached tokens", sub.ok, sub.detail);
  report.facts.emplace_back("gpu.nras.overall_result", overall.ok ? "true" : "false");
  for (const auto& [name, token] : answer.detached) {
    auto s = verify_jwt(token, jwks);
    add("gpu.nras." + name + ".signature", "NRAS " + name + " token is signed (ES384) by a key in NVIDIA's JWKS",
        s.status == SigStatus::Ok, s.detail + origin);
    auto n = check_eat_nonce(token, expected_nonce_hex);
    add("gpu.nras." + name + ".eat_nonce", "NRAS " + name + " token's eat_nonce is our nonce", n.ok, n.detail);
    std::string measres = str_or(token.claims, "measres");
    add("gpu.nras." + name + ".measres", "NRAS " + name + " measurements match NVIDIA's reference values",
        measres == "success", "measres = \"" + measres + "\"");
    for (const char* k : {"x-nvidia-gpu-driver-version", "x-nvidia-gpu-vbios-version", "hwmodel"}) {
      std::string val = str_or(token.claims, k);
      if (!val.empty()) report.facts.emplace_back("gpu.nras." + name + "." + k, val);
    }
  }
  // Freshness comes from eat_nonce; token lifetime is reported, not enforced (recorded answers age out).
  auto num = [&](std::string_view k) -> std::optional<std::int64_t> {
    auto it = answer.overall.claims.find(k);
    if (it == answer.overall.claims.end()) return std::nullopt;
    if (it->value().is_int64()) return it->value().as_int64();
    if (it->value().is_uint64()) return static_cast<std::int64_t>(it->value().as_uint64());
    return std::nullopt;
  };
  auto nbf = num("nbf"), exp = num("exp");
  bool in_window = (!nbf || *nbf <= now) && (!exp || now <= *exp);
  add("gpu.nras.token_time", "NRAS overall token is inside its nbf..exp window at now", in_window,
      "now=" + std::to_string(now) + " nbf=" + (nbf ? std::to_string(*nbf) : "-") +
          " exp=" + (exp ? std::to_string(*exp) : "-") + " (reported only: freshness is proven by eat_nonce)",
      false);
}

boost::json::value build_request(std::string_view nonce_hex, std::string_view arch,
                                 const std::vector<std::pair<std::string, std::string>>& evidence_and_certificate) {
  boost::json::array list;
  for (const auto& [ev, cert] : evidence_and_certificate) {
    list.push_back(boost::json::object{{"evidence", ev}, {"certificate", cert}});
  }
  return boost::json::object{
      {"nonce", nonce_hex}, {"arch", arch}, {"claims_version", "3.0"}, {"evidence_list", std::move(list)}};
}

}  // namespace pi::verify::nras
