#pragma once
// Names shared by the proxy's pieces (session, routes, handlers, relay): Beast/Asio aliases and the
// request/response types every handler speaks.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <string_view>

namespace pi::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using Clock = std::chrono::steady_clock;

// Completion token: awaitable operations return (error_code, …) tuples instead of throwing.
inline constexpr auto kTuple = net::as_tuple(net::use_awaitable);

inline constexpr std::string_view kServerName = "private-inference";

bool iequals(std::string_view a, std::string_view b);

// Request target split at '?': path and raw query (both undecoded).
struct Target {
  std::string_view path;
  std::string_view query;
};
Target split_target(std::string_view target);

// A 200-class (or any) JSON response with the proxy's Server header and prepared payload.
Response json_response(http::status status, std::string body, bool keep_alive);

}  // namespace pi::server
