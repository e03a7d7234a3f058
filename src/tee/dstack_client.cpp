#include "tee/dstack_client.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <cstdlib>
#include <memory>

#include "net/http_io.hpp"

namespace pi::tee {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxResponseBytes = std::size_t{16} << 20;  // Info carries certificates + compose files
constexpr std::size_t kMaxErrorTextChars = 300;

bool is_socket_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// Printable, bounded excerpt of an untrusted body for error messages.
std::string excerpt(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, kMaxErrorTextChars)) out.push_back(std::isprint(static_cast<unsigned char>(c)) ? c : '?');
  if (s.size() > kMaxErrorTextChars) out += "...";
  return out;
}

json::object parse_object(const std::string& body, const std::string& what) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) throw DstackError(what + ": malformed JSON in the agent's answer (" + ec.message() + ")");
  if (!v.is_object()) throw DstackError(what + ": the agent's answer is not a JSON object");
  return std::move(v.as_object());
}

std::string error_text_of(const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (auto* e = v.as_object().if_contains("error")) {
      if (e->is_string()) return excerpt(std::string_view(e->as_string()));
      return excerpt(json::serialize(*e));
    }
  }
  return body.empty() ? std::string("(empty body)") : excerpt(body);
}

// A string field, or the JSON text of a non-string value; empty when absent or null.
std::string string_or_json(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

std::string normalize_hex(std::string_view s) {
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string DstackEndpoint::describe() const {
  if (kind == Kind::Unix) return "unix:" + path;
  if (host.find(':') != std::string::npos) return "http://[" + host + "]:" + port;
  return "http://" + host + ":" + port;
}

std::optional<DstackEndpoint> parse_dstack_endpoint(const std::string& s) {
  std::string_view v(s);
  DstackEndpoint ep;
  if (v.starts_with("http://")) {
    v.remove_prefix(7);
    while (!v.empty() && v.back() == '/') v.remove_suffix(1);
    if (v.empty() || v.find('/') != std::string_view::npos) return std::nullopt;
    std::string_view host, port = "80";
    if (v.front() == '[') {  // [v6]:port
      auto close = v.find(']');
      if (close == std::string_view::npos) return std::nullopt;
      host = v.substr(1, close - 1);
      auto rest = v.substr(close + 1);
      if (!rest.empty()) {
        if (rest.front() != ':') return std::nullopt;
        port = rest.substr(1);
      }
    } else {
      auto colon = v.rfind(':');
      host = v.substr(0, colon);
      if (colon != std::string_view::npos) port = v.substr(colon + 1);
    }
    if (host.empty() || port.empty() || port.size() > 5) return std::nullopt;
    for (char c : port)
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    if (std::atoi(std::string(port).c_str()) > 65535) return std::nullopt;
    ep.kind = DstackEndpoint::Kind::Http;
    ep.host = std::string(host);
    ep.port = std::string(port);
    return ep;
  }
  if (v.starts_with("unix://")) {
    v.remove_prefix(7);
  } else if (v.starts_with("unix:")) {
    v.remove_prefix(5);
  } else if (v.find("://") != std::string_view::npos) {
    return std::nullopt;  // https:// and others: the agent speaks plain HTTP only
  }
  if (v.empty() || v.find('\0') != std::string_view::npos) return std::nullopt;
  ep.kind = DstackEndpoint::Kind::Unix;
  ep.path = std::string(v);
  return ep;
}

std::optional<DstackEndpoint> discover_dstack(const std::string& flag_value) {
  auto explicit_value = [](const std::string& value, const char* origin) {
    auto ep = parse_dstack_endpoint(value);
    if (!ep)
      throw DstackError(std::string("invalid dstack endpoint in ") + origin + ": '" + excerpt(value) +
                        "' (expected a socket path, unix:/path or http://host:port)");
    return ep;
  };
  if (!flag_value.empty()) return explicit_value(flag_value, "--dstack-socket");
  if (const char* env = std::getenv("DSTACK_SIMULATOR_ENDPOINT"); env != nullptr && *env != '\0')
    return explicit_value(env, "DSTACK_SIMULATOR_ENDPOINT");
  for (const char* path : {"/var/run/dstack.sock", "/var/run/dstack/dstack.sock"}) {
    if (is_socket_file(path)) return parse_dstack_endpoint(path);
  }
  return std::nullopt;
}

DstackClient::DstackClient(asio::any_io_executor ex, DstackEndpoint ep, std::chrono::milliseconds timeout)
    : ex_(std::move(ex)), ep_(std::move(ep)), timeout_(timeout) {}

asio::awaitable<std::string> DstackClient::call(std::string method, std::string body) {
  const std::string what = "dstack " + method + " at " + ep_.describe();
  http::request<http::string_body> req{http::verb::post, "/" + method, 11};
  req.set(http::field::host, ep_.kind == DstackEndpoint::Kind::Unix ? std::string("localhost") : ep_.host);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json");
  req.set(http::field::connection, "close");
  req.body() = std::move(body);
  req.prepare_payload();

  http::response<http::string_body> res;
  // One deadline for connect + write + read: basic_stream keeps the expiry for every later operation.
  try {
    if (ep_.kind == DstackEndpoint::Kind::Unix) {
      beast::basic_stream<asio::local::stream_protocol, asio::any_io_executor> stream(ex_);
      stream.expires_after(timeout_);
      co_await stream.async_connect(asio::local::stream_protocol::endpoint(ep_.path), asio::use_awaitable);
      res = co_await net::async_exchange(stream, req, kMaxResponseBytes);
      boost::system::error_code ignored;
      stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
    } else {
      // Name resolution is not covered by basic_stream's timer: a watchdog cancels it at the same deadline.
      const auto deadline = std::chrono::steady_clock::now() + timeout_;
      auto resolver = std::make_shared<asio::ip::tcp::resolver>(ex_);
      asio::steady_timer watchdog(ex_, deadline);
      watchdog.async_wait([weak = std::weak_ptr<asio::ip::tcp::resolver>(resolver)](boost::system::error_code ec) {
        if (auto r = weak.lock(); r && !ec) r->cancel();
      });
      auto [rec, results] = co_await resolver->async_resolve(ep_.host, ep_.port, asio::as_tuple(asio::use_awaitable));
      watchdog.cancel();
      if (rec == asio::error::operation_aborted && std::chrono::steady_clock::now() >= deadline)
        throw boost::system::system_error(beast::error::timeout);
      if (rec) throw boost::system::system_error(rec, "resolve " + ep_.host);
      beast::basic_stream<asio::ip::tcp, asio::any_io_executor> stream(ex_);
      stream.expires_at(deadline);
      co_await stream.async_connect(results, asio::use_awaitable);
      res = co_await net::async_exchange(stream, req, kMaxResponseBytes);
      boost::system::error_code ignored;
      stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
    }
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout)
      throw DstackError(what + ": no answer within " + std::to_string(timeout_.count()) + " ms (timed out)");
    if (e.code() == http::error::body_limit)
      throw DstackError(what + ": answer larger than " + std::to_string(kMaxResponseBytes) + " bytes");
    throw DstackError(what + ": " + e.code().message());
  }

  const unsigned status = res.result_int();
  if (status < 200 || status >= 300)
    throw DstackError(what + ": HTTP " + std::to_string(status) + ": " + error_text_of(res.body()));
  co_return std::move(res.body());
}

asio::awaitable<QuoteResult> DstackClient::get_quote(ByteView report_data) {
  if (report_data.size() > 64)
    throw DstackError("dstack GetQuote: report_data is " + std::to_string(report_data.size()) +
                      " bytes, at most 64 allowed");
  json::object req;
  req["report_data"] = to_hex(report_data);
  const std::string body = co_await call("GetQuote", json::serialize(req));
  const json::object o = parse_object(body, "dstack GetQuote");

  QuoteResult r;
  const json::value* q = o.if_contains("quote");
  if (q == nullptr || !q->is_string()) throw DstackError("dstack GetQuote: the answer has no \"quote\" string");
  r.quote_hex = normalize_hex(q->as_string());
  if (r.quote_hex.empty() || !from_hex(r.quote_hex)) throw DstackError("dstack GetQuote: \"quote\" is not hex");
  r.event_log = string_or_json(o, "event_log");
  r.report_data_hex = string_or_json(o, "report_data");
  r.vm_config = string_or_json(o, "vm_config");
  if (const json::value* s = o.if_contains("simulated"); s != nullptr && s->is_bool()) r.simulated = s->as_bool();
  co_return r;
}

asio::awaitable<json::object> DstackClient::info() {
  co_return parse_object(co_await call("Info", "{}"), "dstack Info");
}

asio::awaitable<KeyResult> DstackClient::get_key(std::string path, std::string purpose) {
  json::object req;
  req["path"] = path;
  req["purpose"] = purpose;
  const json::object o = parse_object(co_await call("GetKey", json::serialize(req)), "dstack GetKey");
  const json::value* k = o.if_contains("key");
  if (k == nullptr || !k->is_string()) throw DstackError("dstack GetKey: the answer has no \"key\" string");
  auto key = from_hex(std::string_view(k->as_string()));
  if (!key || key->empty()) throw DstackError("dstack GetKey: \"key\" is not non-empty hex");
  KeyResult r;
  r.key = std::move(*key);
  if (const json::value* chain = o.if_contains("signature_chain"); chain != nullptr && chain->is_array()) {
    for (const json::value& s : chain->as_array()) {
      if (!s.is_string()) throw DstackError("dstack GetKey: \"signature_chain\" holds a non-string entry");
      r.signature_chain.emplace_back(s.as_string());
    }
  }
  co_return r;
}

asio::awaitable<json::object> DstackClient::version() {
  co_return parse_object(co_await call("Version", "{}"), "dstack Version");
}

KeyResult get_key_blocking(const DstackEndpoint& ep, const std::string& path, const std::string& purpose,
                           std::chrono::milliseconds timeout) {
  asio::io_context ioc;
  DstackClient client(ioc.get_executor(), ep, timeout);
  auto fut = asio::co_spawn(ioc, client.get_key(path, purpose), asio::use_future);
  ioc.run();
  return fut.get();  // rethrows DstackError
}

}  // namespace pi::tee
