#pragma once
// Minimal HTTP/1.1 client for the verifier (the proxy's attestation and signature endpoints, Intel
// PCS / a PCCS for collateral, NVIDIA NRAS). http:// and https:// (system trust store plus optional
// extra CAs, host name checked, SNI). The one TLS client of the verifier.
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pi::verify {

struct HttpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct HttpRequest {
  std::string method = "GET";  // GET or POST
  std::string body;            // POST: sent as application/json
  std::vector<std::pair<std::string, std::string>> headers;
  int timeout_s = 30;
  std::string extra_ca_pem;  // https: CA(s) trusted besides the system store (tests, private mirrors)
  std::uint64_t body_limit = std::uint64_t{64} << 20;
};

// Throws HttpError on a bad URL, transport failure or timeout (never on an HTTP error status).
HttpResponse http_request(std::string_view url, const HttpRequest& req);
HttpResponse http_get(std::string_view url, const std::vector<std::pair<std::string, std::string>>& headers = {},
                      int timeout_s = 30);

// "%2D" → "-" etc. (Intel PCS sends issuer chains URL-encoded in headers), by protocol::percent_decode
// ('+' stays '+'). A value with a bad or truncated escape is returned unchanged: no header Intel sends
// has one, and the PEM parser that reads the result then names the problem.
std::string url_decode(std::string_view s);

}  // namespace pi::verify
