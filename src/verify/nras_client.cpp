// HTTPS for NRAS (POST evidence) and NVIDIA's JWKS (GET), through the verifier's one HTTP client
// (http_client.hpp: OpenSSL TLS, system trust store plus extra CAs, host name verified). There is no network in the
// test environment; callers treat a transport failure as "NRAS skipped: network unavailable".
#include <cstdint>
#include <string>

#include "verify/http_client.hpp"
#include "verify/nras.hpp"

namespace pi::verify::nras {

HttpResult https_request(std::string_view method, std::string_view url, std::string_view body, int timeout_s,
                         std::string_view extra_ca_pem) {
  HttpResult out;
  if (!url.starts_with("https://")) {  // evidence and tokens never travel in the clear
    out.error = "not an https:// URL: " + std::string(url);
    return out;
  }
  HttpRequest r;
  r.method = method == "POST" ? "POST" : "GET";
  r.body = std::string(body);
  r.headers = {{"Accept", "application/json"}};
  r.timeout_s = timeout_s;
  r.extra_ca_pem = std::string(extra_ca_pem);
  r.body_limit = std::uint64_t{8} << 20;
  try {
    auto res = http_request(url, r);
    out.status = res.status;
    out.body = std::move(res.body);
    out.ok = true;
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

}  // namespace pi::verify::nras
