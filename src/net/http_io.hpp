#pragma once
// The HTTP/1.1 read steps over Beast that several edges repeat, written once (header-only: no
// library of its own; every layer that includes it already links Boost):
//   * async_exchange: a client's one request → one response with a body limit
//     (tee/dstack_client.cpp to the dstack agent, verify/http_client.cpp to the proxy / PCS / NRAS);
//   * async_read_request: a server's read of one request — header, "100 Continue" when the client
//     asks for it, then the body — and one classification of what went wrong (devtee/devtee.cpp;
//     the proxy's session loop reads requests the same way).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdint>
#include <tuple>

namespace pi::net {

// Writes `req`, reads one response of at most `body_limit` body bytes. Throws boost::system::system_error
// (http::error::body_limit when the body is larger; the stream's own timeout error on expiry).
template <class Stream>
boost::asio::awaitable<boost::beast::http::response<boost::beast::http::string_body>> async_exchange(
    Stream& stream, const boost::beast::http::request<boost::beast::http::string_body>& req, std::uint64_t body_limit) {
  namespace http = boost::beast::http;
  co_await http::async_write(stream, req, boost::asio::use_awaitable);
  boost::beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(body_limit);
  co_await http::async_read(stream, buf, parser, boost::asio::use_awaitable);
  co_return parser.release();
}

enum class RequestRead {
  Ok,         // a complete request is in the parser
  TooLarge,   // the body (declared or sent) is over the parser's body limit: answer 413 and close
  Malformed,  // not HTTP/1.1 as Beast parses it: answer 400 and close
  Closed,     // the peer went away, timed out or the read was cancelled: just close
};

// What an error from reading a request means for the answer.
inline RequestRead classify_request_error(const boost::system::error_code& ec) {
  namespace http = boost::beast::http;
  if (!ec) return RequestRead::Ok;
  if (ec == http::error::body_limit) return RequestRead::TooLarge;
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return RequestRead::Malformed;
  return RequestRead::Closed;
}

// Reads one request into `parser` (its limits set by the caller; a timeout is the stream's): the header,
// then — when a body follows and the client sent "Expect: 100-continue" (curl does for larger bodies and
// waits for it) — an interim "100 Continue", then the body. Never throws for I/O: `ec` is the first error.
template <class Stream, class Parser>
boost::asio::awaitable<std::tuple<RequestRead, boost::system::error_code>> async_read_request(
    Stream& stream, boost::beast::flat_buffer& buf, Parser& parser) {
  namespace http = boost::beast::http;
  constexpr auto tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
  auto [ec, n] = co_await http::async_read_header(stream, buf, parser, tuple);
  if (!ec && !parser.is_done()) {
    if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
      std::tie(ec, n) = co_await http::async_write(stream, cont, tuple);
    }
    if (!ec) std::tie(ec, n) = co_await http::async_read(stream, buf, parser, tuple);
  }
  (void)n;
  co_return std::tuple{classify_request_error(ec), ec};
}

}  // namespace pi::net
