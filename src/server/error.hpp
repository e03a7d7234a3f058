#pragma once
// The proxy's one error type. Everything the proxy itself refuses is an HttpError, rendered once,
// here, as the OpenAI envelope {"error":{"message","type","param","code"}}. Handlers return it (or
// throw it from deep inside); the session renders it. Errors from the engine are not HttpErrors:
// they pass through unchanged.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/http.hpp"

namespace pi::server {

struct HttpError {
  http::status status = http::status::bad_request;
  std::string message;
  std::string type = "invalid_request_error";
  std::string code;
  std::optional<std::string> param;
  // x-should-retry: false — retrying the same request cannot succeed. Default: every 4xx but 429.
  bool retry_useless = true;
  std::vector<std::pair<http::field, std::string>> headers;  // Allow, Retry-After, WWW-Authenticate, …

  HttpError& with_header(http::field f, std::string value) {
    headers.emplace_back(f, std::move(value));
    return *this;
  }
  Response render(bool keep_alive) const;

  // The errors the proxy makes, one constructor each (status, type, code and retry rule live here).
  static HttpError bad_request(std::string message, std::string code, std::optional<std::string> param = {});
  static HttpError not_found(std::string message, std::string code, std::optional<std::string> param = {});
  static HttpError method_not_allowed(http::verb allowed);
  static HttpError unauthorized();
  static HttpError payload_too_large(std::size_t limit);
  static HttpError malformed_http(std::string_view detail);
  static HttpError too_many_requests(std::string message, std::string code, unsigned retry_after_s);
  static HttpError unavailable(std::string message, std::string code, bool retry_useless);
  static HttpError bad_gateway(std::string message, std::string code);
  static HttpError gateway_timeout(std::string message, std::string code);
  static HttpError internal();
};

// Thrown by code that cannot return an HttpError directly; the session catches and renders it.
struct HttpErrorException : std::exception {
  explicit HttpErrorException(HttpError e) : error(std::move(e)) {}
  const char* what() const noexcept override { return error.message.c_str(); }
  HttpError error;
};

}  // namespace pi::server
