// NVIDIA NRAS answers and their EAT tokens (verify/nras.hpp): the input is tried as a compact JWT, as a JWKS
// document and as a JSON answer ([["JWT", overall], {"GPU-0": detached, ...}]); a parsed answer goes through every
// check `verify` runs on it, with a JWKS holding a throwaway P-384 key under the kid NVIDIA's recorded tokens
// use, so that the key lookup succeeds and ES384 verification runs (and fails).
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "crypto/bytes.hpp"
#include "fuzz_support.hpp"
#include "verify/nras.hpp"

namespace {

namespace nras = pi::verify::nras;

// The kid of the recorded NRAS tokens (tests/fixtures/nvidia/vllm_proxy_nras_sample_response.json).
constexpr const char* kKid = "nv-eat-kid-prod-20251005051232363-51f0d623-fb42-4c95-ac4a-a65ff322076e";
// That answer's nonce.
constexpr const char* kNonce = "56f5c2c4f23fda73db0536276f39a266569e1517de34023817ce455a79efb6d7";

nras::Jwks make_jwks() {
  EVP_PKEY* key = EVP_EC_gen("P-384");
  unsigned char pub[97];
  std::size_t len = 0;
  if (key == nullptr || EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &len) != 1 ||
      len != sizeof pub)
    throw std::runtime_error("cannot make a P-384 key");
  EVP_PKEY_free(key);
  boost::json::object k{{"kty", "EC"},
                        {"crv", "P-384"},
                        {"kid", kKid},
                        {"x", pi::base64url_encode(pi::ByteView(pub + 1, 48))},
                        {"y", pi::base64url_encode(pi::ByteView(pub + 49, 48))}};
  return nras::Jwks::parse(boost::json::serialize(boost::json::object{{"keys", boost::json::array{k}}}));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nras::Jwks jwks = make_jwks();
  const auto text = pi::fuzz::as_text(data, size);
  try {
    const auto t = nras::parse_jwt(text);
    if (t.signing_input.size() >= t.compact.size()) __builtin_trap();
    (void)nras::verify_jwt(t, &jwks);
    (void)nras::verify_jwt(t, nullptr);
    (void)nras::check_eat_nonce(t, kNonce);
    (void)nras::check_overall_result(t);
  } catch (const nras::Error&) {
  }
  try {
    const auto k = nras::Jwks::parse(text);
    (void)k.find(kKid);
  } catch (const nras::Error&) {
  }
  boost::system::error_code ec;
  const auto doc = boost::json::parse(text, ec);
  if (ec) return 0;
  nras::Answer answer;
  try {
    answer = nras::parse_answer(doc);
  } catch (const nras::Error&) {
    return 0;
  }
  (void)nras::check_submods(answer);
  pi::verify::Report rep;
  nras::check_answer(answer, &jwks, "fuzz", kNonce, 1759774100, rep);
  nras::check_answer(answer, nullptr, "", kNonce, 1759774100, rep);
  return 0;
}
