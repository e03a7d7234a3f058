#include "server/error.hpp"

#include "protocol/wire.hpp"

namespace pi::server {

namespace {
HttpError make(http::status st, std::string message, std::string type, std::string code, bool retry_useless,
               std::optional<std::string> param = {}) {
  HttpError e;
  e.status = st;
  e.message = std::move(message);
  e.type = std::move(type);
  e.code = std::move(code);
  e.param = std::move(param);
  e.retry_useless = retry_useless;
  return e;
}
}  // namespace

Response HttpError::render(bool keep_alive) const {
  std::optional<std::string_view> p;
  if (param) p = *param;
  Response res = json_response(status, protocol::error_envelope(message, type, p, code), keep_alive);
  if (retry_useless) res.set("x-should-retry", "false");
  for (const auto& [f, v] : headers) res.set(f, v);
  return res;
}

HttpError HttpError::bad_request(std::string message, std::string code, std::optional<std::string> param) {
  return make(http::status::bad_request, std::move(message), "invalid_request_error", std::move(code), true,
              std::move(param));
}

HttpError HttpError::not_found(std::string message, std::string code, std::optional<std::string> param) {
  return make(http::status::not_found, std::move(message), "invalid_request_error", std::move(code), true,
              std::move(param));
}

HttpError HttpError::method_not_allowed(http::verb allowed) {
  const std::string m(http::to_string(allowed));
  return make(http::status::method_not_allowed, "Method not allowed; use " + m, "invalid_request_error",
              "method_not_allowed", true)
      .with_header(http::field::allow, m);
}

HttpError HttpError::unauthorized() {
  return make(http::status::unauthorized, "Missing or invalid bearer token", "authentication_error", "invalid_api_key",
              true)
      .with_header(http::field::www_authenticate, "Bearer");
}

HttpError HttpError::payload_too_large(std::size_t limit) {
  return make(http::status::payload_too_large, "Request body too large. Maximum: " + std::to_string(limit) + " bytes",
              "invalid_request_error", "request_too_large", true);
}

HttpError HttpError::malformed_http(std::string_view detail) {
  return make(http::status::bad_request, "Malformed HTTP request: " + std::string(detail), "invalid_request_error",
              "bad_request", true);
}

HttpError HttpError::too_many_requests(std::string message, std::string code, unsigned retry_after_s) {
  return make(http::status::too_many_requests, std::move(message), "rate_limit_error", std::move(code), false)
      .with_header(http::field::retry_after, std::to_string(retry_after_s));
}

HttpError HttpError::unavailable(std::string message, std::string code, bool retry_useless) {
  return make(http::status::service_unavailable, std::move(message), "server_error", std::move(code), retry_useless);
}

HttpError HttpError::bad_gateway(std::string message, std::string code) {
  return make(http::status::bad_gateway, std::move(message), "server_error", std::move(code), false);
}

HttpError HttpError::gateway_timeout(std::string message, std::string code) {
  return make(http::status::gateway_timeout, std::move(message), "server_error", std::move(code), false);
}

HttpError HttpError::internal() {
  return make(http::status::internal_server_error, "Internal error", "server_error", "internal_error", false);
}

}  // namespace pi::server
