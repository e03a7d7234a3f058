#pragma once
// Helpers shared by unit tests: a temporary directory, running a coroutine to completion on an
// io_context that may also run servers, and a throwaway ES384 signer standing in for NVIDIA's NRAS.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <stdlib.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "crypto/bytes.hpp"

namespace pi::testsupport {

// A file of tests/fixtures/nvidia/ (real recorded evidence; sources in tests/fixtures/SOURCES.md).
inline std::string nvidia_fixture(const std::string& name) {
  std::ifstream f(std::string(PI_FIXTURES_DIR) + "/nvidia/" + name, std::ios::binary);
  EXPECT_TRUE(f) << name;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The nonce inside the recorded nvtrust H100 report (nvtrust_hopper_report.hex).
inline constexpr const char* kNvtrustNonce = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

// The recorded nvtrust H100 report and its chain as a proxy's "nvidia_payload" (a JSON string, base64).
inline boost::json::value nvtrust_payload() {
  auto hex = nvidia_fixture("nvtrust_hopper_report.hex");
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.pop_back();
  auto report = from_hex(hex).value();
  boost::json::object it{{"certificate", pi::base64_encode(as_bytes(nvidia_fixture("nvtrust_hopper_certchain.pem")))},
                         {"evidence", pi::base64_encode(report)},
                         {"arch", "HOPPER"}};
  boost::json::object o{{"nonce", kNvtrustNonce}, {"evidence_list", boost::json::array{it}}, {"arch", "HOPPER"}};
  return boost::json::value(boost::json::serialize(o));
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pi-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }
};

// Runs `aw` on `ioc` (which may also run servers) until it completes; rethrows its exception.
template <class T>
T run_co(boost::asio::io_context& ioc, boost::asio::awaitable<T> aw) {
  auto fut = boost::asio::co_spawn(ioc, std::move(aw), boost::asio::use_future);
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("test coroutine did not finish");
    ioc.run_one_for(std::chrono::milliseconds(100));
    if (ioc.stopped()) ioc.restart();
  }
  return fut.get();
}

// Throwaway NRAS stand-in signer (test only): ES384 JWTs and the matching JWKS.
struct NrasTestSigner {
  EVP_PKEY* key = EVP_EC_gen("P-384");
  std::string kid;
  explicit NrasTestSigner(std::string k = "simulated-nras-key") : kid(std::move(k)) {}
  ~NrasTestSigner() { EVP_PKEY_free(key); }
  NrasTestSigner(const NrasTestSigner&) = delete;
  NrasTestSigner& operator=(const NrasTestSigner&) = delete;

  std::string sign(const boost::json::object& claims) const {
    auto b64u = [](std::string_view s) { return pi::base64url_encode(as_bytes(s)); };
    boost::json::object header{{"kid", kid}, {"alg", "ES384"}};
    std::string input = b64u(boost::json::serialize(header)) + "." + b64u(boost::json::serialize(claims));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha384(), nullptr, key);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    Bytes der(len);
    EVP_DigestSign(ctx, der.data(), &len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    const unsigned char* p = der.data();
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len));
    Bytes raw(96);
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw.data(), 48);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw.data() + 48, 48);
    ECDSA_SIG_free(sig);
    return input + "." + pi::base64url_encode(raw);
  }

  std::string jwks() const {
    unsigned char pub[97];
    std::size_t len = 0;
    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub, &len);
    if (len != 97) throw std::runtime_error("unexpected P-384 public key size");
    boost::json::object k{{"kty", "EC"},
                          {"crv", "P-384"},
                          {"kid", kid},
                          {"use", "sig"},
                          {"x", pi::base64url_encode(ByteView(pub + 1, 48))},
                          {"y", pi::base64url_encode(ByteView(pub + 49, 48))}};
    return boost::json::serialize(boost::json::object{{"keys", boost::json::array{k}}});
  }
};

}  // namespace pi::testsupport
