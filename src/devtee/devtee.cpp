#include "devtee/devtee.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "crypto/eth.hpp"
#include "crypto/random.hpp"
#include "net/http_io.hpp"
#include "protocol/event_log.hpp"
#include "protocol/tdx_quote.hpp"
#include "protocol/url.hpp"
#include "version.hpp"

namespace pi::devtee {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using local = asio::local::stream_protocol;

namespace {

constexpr std::size_t kMaxFixtureBytes = std::size_t{64} << 20;
constexpr std::size_t kReportDataLen = 64;

// Where REPORTDATA sits in the recorded quote (TDX v4 or v5), by the one quote layout.
std::size_t report_data_offset_of(const Bytes& q, const std::string& path) {
  try {
    return protocol::tdx::report_data_offset(q);
  } catch (const protocol::tdx::QuoteParseError& e) {
    throw std::runtime_error("fixture " + path + ": " + e.what());
  }
}

std::string string_or_json(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

std::string error_body(std::string_view message) {
  json::object o;
  o["error"] = message;
  o["simulated"] = true;
  return json::serialize(o);
}

Reply error_reply(unsigned status, std::string_view message) { return {status, error_body(message)}; }

// Query parameters as a JSON object of strings (a repeated key: the last wins); nullopt on a bad %-escape.
std::optional<json::object> parse_query(std::string_view q) {
  auto pairs = protocol::parse_query(q);
  if (!pairs) return std::nullopt;
  json::object args;
  for (const auto& [k, v] : *pairs) args[k] = v;
  return args;
}

// A string argument; missing → "" (as dstack's protobuf defaults); non-string → nullopt.
std::optional<std::string> string_arg(const json::object& args, std::string_view key) {
  const json::value* v = args.if_contains(key);
  if (v == nullptr || v->is_null()) return std::string();
  if (!v->is_string()) return std::nullopt;
  return std::string(v->as_string());
}

std::string read_file_limited(const std::string& path, std::size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  std::string data;
  char buf[65536];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    data.append(buf, static_cast<std::size_t>(in.gcount()));
    if (data.size() > limit) throw std::runtime_error(path + " is larger than " + std::to_string(limit) + " bytes");
  }
  if (in.bad()) throw std::runtime_error("cannot read " + path);
  return data;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Fixture

Fixture load_fixture(const std::string& path) {
  const std::string text = read_file_limited(path, kMaxFixtureBytes);
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) throw std::runtime_error("fixture " + path + ": malformed JSON (" + ec.message() + ")");
  if (!root.is_object()) throw std::runtime_error("fixture " + path + ": not a JSON object");
  const json::object& top = root.as_object();

  // The GetQuote answer is either nested under "quote" or the top-level object itself.
  const json::object* answer = &top;
  if (const json::value* q = top.if_contains("quote"); q != nullptr && q->is_object()) answer = &q->as_object();
  const json::value* qhex = answer->if_contains("quote");
  if (qhex == nullptr || !qhex->is_string()) throw std::runtime_error("fixture " + path + ": no quote hex string");
  auto quote = from_hex(std::string_view(qhex->as_string()));
  if (!quote) throw std::runtime_error("fixture " + path + ": quote is not hex");

  Fixture f;
  f.quote = std::move(*quote);
  f.report_data_offset = report_data_offset_of(f.quote, path);
  f.event_log = string_or_json(*answer, "event_log");
  if (f.event_log.empty()) throw std::runtime_error("fixture " + path + ": no event_log");
  f.vm_config = string_or_json(*answer, "vm_config");

  if (const json::value* info = top.if_contains("info"); info != nullptr) {
    if (!info->is_object()) throw std::runtime_error("fixture " + path + ": info is not an object");
    json::object i = info->as_object();
    // Real dstack returns tcb_info as a JSON-encoded string.
    if (json::value* tcb = i.if_contains("tcb_info"); tcb != nullptr && !tcb->is_string()) {
      *tcb = json::serialize(*tcb);
    }
    if (f.vm_config.empty()) f.vm_config = string_or_json(i, "vm_config");
    if (f.vm_config.empty()) {
      // The recording has no vm_config: derive the minimal one real dstack would report from the recorded
      // Info (spec_version + os_image_hash). Documented in docs/dev-tee.md.
      if (const json::value* h = i.if_contains("os_image_hash"); h != nullptr && h->is_string()) {
        json::object vm;
        vm["spec_version"] = 1;
        vm["os_image_hash"] = h->as_string();
        f.vm_config = json::serialize(vm);
      }
    }
    if (!i.contains("vm_config") && !f.vm_config.empty()) i["vm_config"] = f.vm_config;
    f.info = std::move(i);
  }
  return f;
}

std::string default_fixture_path() {
  if (const char* env = std::getenv("PI_DEVTEE_FIXTURE"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  fs::path base = ec ? fs::current_path() : exe.parent_path();
  return (base / ".." / "tests" / "fixtures" / "tdx" / "vllm_proxy_sample_dstack.json").lexically_normal().string();
}

// ---------------------------------------------------------------------------------------------------------------
// Keys

KeyDeriver KeyDeriver::open(const std::string& state_dir) {
  std::array<std::uint8_t, 32> seed{};
  if (state_dir.empty()) {
    crypto::random_fill(seed);
    return KeyDeriver(seed);
  }
  std::error_code ec;
  if (fs::create_directories(state_dir, ec)) {
    fs::permissions(state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  } else if (ec) {
    throw std::runtime_error("cannot create state dir " + state_dir + ": " + ec.message());
  }
  const std::string seed_path = (fs::path(state_dir) / "seed").string();

  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fs::exists(seed_path, ec)) {
      std::string text = read_file_limited(seed_path, 1024);
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      auto bytes = from_hex(text);
      if (!bytes || bytes->size() != seed.size() || !is_hex_of_length(text, 64))
        throw std::runtime_error("corrupt dev-tee seed file " + seed_path + " (expected 64 hex digits)");
      std::copy(bytes->begin(), bytes->end(), seed.begin());
      KeyDeriver k(seed);
      k.persistent_ = true;
      return k;
    }
    // Create atomically: write a private temp file, then link() it into place (fails if another process won).
    crypto::random_fill(seed);
    const std::string tmp = seed_path + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + tmp + ": " + std::strerror(errno));
    const std::string text = to_hex(seed) + "\n";
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(tmp.c_str());
      throw std::runtime_error("cannot write " + tmp);
    }
    const int linked = ::link(tmp.c_str(), seed_path.c_str());
    const int link_errno = errno;
    ::unlink(tmp.c_str());
    if (linked == 0) {
      spdlog::info("dev-tee: created a new key seed in {}", seed_path);
      KeyDeriver k(seed);
      k.persistent_ = true;
      return k;
    }
    if (link_errno != EEXIST) throw std::runtime_error("cannot create " + seed_path + ": " + std::strerror(link_errno));
  }
  throw std::runtime_error("cannot create or read " + seed_path);
}

Bytes KeyDeriver::derive(std::string_view path, std::string_view purpose) const {
  if (path.find('\0') != std::string_view::npos || purpose.find('\0') != std::string_view::npos)
    throw std::invalid_argument("key path and purpose must not contain NUL bytes");
  std::string msg = "dstack-dev-tee-key";
  msg.push_back('\0');
  msg.append(path);
  msg.push_back('\0');
  msg.append(purpose);
  for (std::uint32_t counter = 0;; ++counter) {
    std::string m = msg;
    if (counter > 0) {
      m.push_back('\0');
      for (int shift = 24; shift >= 0; shift -= 8) m.push_back(static_cast<char>((counter >> shift) & 0xff));
    }
    Bytes out(32);
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), seed_.data(), static_cast<int>(seed_.size()),
             reinterpret_cast<const unsigned char*>(m.data()), m.size(), out.data(), &len) == nullptr ||
        len != out.size())
      throw std::runtime_error("HMAC-SHA256 failed");
    if (crypto::EthSigner::from_secret(out)) return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Request targets

std::string normalize_target(std::string_view target) {
  // absolute-form: scheme ":" "//" authority [path-abempty] ["?" query]  (scheme = ALPHA *(ALPHA / DIGIT / "+-."))
  if (!target.empty() && std::isalpha(static_cast<unsigned char>(target.front()))) {
    std::size_t i = 1;
    while (i < target.size() && (std::isalnum(static_cast<unsigned char>(target[i])) || target[i] == '+' ||
                                 target[i] == '-' || target[i] == '.'))
      ++i;
    if (target.substr(i, 3) == "://") {
      std::string_view rest = target.substr(i + 3);
      const std::size_t end = rest.find_first_of("/?#");
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
      target = rest;
    }
  }
  std::string out = target.empty() || target.front() != '/' ? "/" + std::string(target) : std::string(target);
  if (out.rfind("/prpc/", 0) == 0) out.erase(0, 5);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Handler

struct Handler::Events {
  std::mutex mu;
  std::vector<EmittedEvent> list;
};

namespace {

namespace evlog = protocol::event_log;

crypto::Digest48 emitted_digest(const EmittedEvent& e) {
  return evlog::runtime_event_digest(evlog::kDstackRuntimeEventType, e.event, e.payload);
}

// The recorded event log (a JSON array in a string) with the emitted events appended in dstack's form.
std::string log_with(const std::string& recorded, const std::vector<EmittedEvent>& emitted) {
  if (emitted.empty()) return recorded;
  json::value v = json::parse(recorded);
  if (!v.is_array()) throw std::runtime_error("the recorded event log is not a JSON array");
  for (const auto& e : emitted)
    v.as_array().push_back(json::object{{"imr", evlog::kRuntimeEventImr},
                                        {"event_type", evlog::kDstackRuntimeEventType},
                                        {"digest", to_hex(emitted_digest(e))},
                                        {"event", e.event},
                                        {"event_payload", to_hex(e.payload)}});
  return json::serialize(v);
}

crypto::Digest48 extended(crypto::Digest48 rtmr3, const std::vector<EmittedEvent>& emitted) {
  for (const auto& e : emitted) evlog::extend_rtmr(rtmr3, emitted_digest(e));
  return rtmr3;
}

}  // namespace

Handler::Handler(Fixture fixture, KeyDeriver keys)
    : fixture_(std::move(fixture)), keys_(keys), events_(std::make_shared<Events>()) {}

std::vector<EmittedEvent> Handler::emitted_events() const {
  std::lock_guard lock(events_->mu);
  return events_->list;
}

Reply Handler::handle(std::string_view method, std::string_view raw_target, std::string_view body) const {
  try {
    if (method != "GET" && method != "POST") return error_reply(405, "method not allowed: use GET or POST");
    const std::string normalized = normalize_target(raw_target);
    const std::string_view target = normalized;
    const auto qpos = target.find('?');
    const std::string_view path = target.substr(0, qpos);
    auto args = parse_query(qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1));
    if (!args) return error_reply(400, "malformed query string");

    std::string_view trimmed = body;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) trimmed.remove_prefix(1);
    if (!trimmed.empty()) {
      boost::system::error_code ec;
      json::value v = json::parse(trimmed, ec);
      if (ec) return error_reply(400, "malformed JSON request body: " + ec.message());
      if (!v.is_object()) return error_reply(400, "the request body must be a JSON object");
      for (auto& kv : v.as_object()) (*args)[kv.key()] = kv.value();
    }

    if (path == "/GetQuote") return get_quote(*args);
    if (path == "/Info") return info();
    if (path == "/GetKey") return get_key(*args);
    if (path == "/EmitEvent") return emit_event(*args);
    if (path == "/Version") return version();
    return error_reply(404, "unknown endpoint; dev-tee serves /GetQuote, /Info, /GetKey, /EmitEvent and /Version");
  } catch (const std::exception& e) {
    spdlog::error("dev-tee: internal error: {}", e.what());
    return error_reply(500, "internal error");
  }
}

Reply Handler::get_quote(const json::object& args) const {
  auto rd_hex = string_arg(args, "report_data");
  if (!rd_hex) return error_reply(400, "report_data must be a hex string");
  auto rd = from_hex(*rd_hex);
  if (!rd) return error_reply(400, "report_data is not valid hex");
  if (rd->size() > kReportDataLen)
    return error_reply(400, "report_data is " + std::to_string(rd->size()) + " bytes; at most 64 bytes allowed");
  rd->resize(kReportDataLen, 0);

  // Exactly what dstack's own simulator does: overwrite REPORTDATA in a recorded quote. The quote's
  // signature covers these bytes, so it no longer verifies.
  Bytes quote = fixture_.quote;
  std::copy(rd->begin(), rd->end(), quote.begin() + static_cast<std::ptrdiff_t>(fixture_.report_data_offset));
  // Emitted events extend RTMR3, which directly precedes REPORTDATA in TD report bodies 1.0 and 1.5.
  const auto emitted = emitted_events();
  if (!emitted.empty()) {
    const auto at = quote.begin() + static_cast<std::ptrdiff_t>(fixture_.report_data_offset - 48);
    crypto::Digest48 rtmr3{};
    std::copy(at, at + 48, rtmr3.begin());
    rtmr3 = extended(rtmr3, emitted);
    std::copy(rtmr3.begin(), rtmr3.end(), at);
  }

  json::object o;
  o["quote"] = to_hex(quote);
  o["event_log"] = log_with(fixture_.event_log, emitted);
  o["report_data"] = to_hex(*rd);
  o["vm_config"] = fixture_.vm_config;
  o["simulated"] = true;
  return {200, json::serialize(o)};
}

Reply Handler::info() const {
  if (!fixture_.info) return error_reply(500, "the dev-tee fixture has no recorded Info");
  json::object o = *fixture_.info;
  const auto emitted = emitted_events();
  if (json::value* t = o.if_contains("tcb_info"); !emitted.empty() && t && t->is_string()) {
    json::value tcb = json::parse(t->as_string());
    if (tcb.is_object()) {
      auto& to = tcb.as_object();
      if (auto* r3 = to.if_contains("rtmr3"); r3 && r3->is_string()) {
        auto b = from_hex(r3->as_string());
        if (b && b->size() == 48) {
          crypto::Digest48 rtmr3{};
          std::copy(b->begin(), b->end(), rtmr3.begin());
          *r3 = to_hex(extended(rtmr3, emitted));
        }
      }
      if (auto* log = to.if_contains("event_log"); log && log->is_array())
        *log = json::parse(log_with(json::serialize(*log), emitted));
      *t = json::serialize(tcb);
    }
  }
  o["simulated"] = true;
  return {200, json::serialize(o)};
}

// dstack's EmitEvent: {"event": name, "payload": hex}; the event extends RTMR3 and joins the event log.
Reply Handler::emit_event(const json::object& args) const {
  auto event = string_arg(args, "event");
  auto payload_hex = string_arg(args, "payload");
  if (!event || !payload_hex) return error_reply(400, "event and payload must be strings");
  if (event->empty()) return error_reply(400, "event name must not be empty");
  auto payload = from_hex(*payload_hex);
  if (!payload) return error_reply(400, "payload is not valid hex");
  {
    std::lock_guard lock(events_->mu);
    if (events_->list.size() >= kMaxEmittedEvents)
      return error_reply(400, "dev-tee records at most " + std::to_string(kMaxEmittedEvents) + " emitted events");
    events_->list.push_back({*event, std::move(*payload)});
  }
  json::object o;
  o["simulated"] = true;
  return {200, json::serialize(o)};
}

Reply Handler::get_key(const json::object& args) const {
  auto path = string_arg(args, "path");
  auto purpose = string_arg(args, "purpose");
  if (!path || !purpose) return error_reply(400, "path and purpose must be strings");
  if (path->find('\0') != std::string::npos || purpose->find('\0') != std::string::npos)
    return error_reply(400, "path and purpose must not contain NUL bytes");
  json::object o;
  o["key"] = to_hex(keys_.derive(*path, *purpose));
  o["signature_chain"] = json::array();
  o["simulated"] = true;
  return {200, json::serialize(o)};
}

Reply Handler::version() const {
  json::object o;
  o["version"] = std::string(kVersion) + "-dev-tee";
  o["rev"] = "simulated";
  o["simulated"] = true;
  return {200, json::serialize(o)};
}

// ---------------------------------------------------------------------------------------------------------------
// Server

using Stream = beast::basic_stream<local, asio::any_io_executor>;

struct Server::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::any_io_executor e, Options o, Service s)
      : ex(std::move(e)), opts(std::move(o)), service(std::move(s)), acceptor(ex) {}

  asio::any_io_executor ex;
  Options opts;
  Service service;
  local::acceptor acceptor;
  std::set<Stream*> conns;
  ino_t socket_inode = 0;
  bool started = false;
  bool stopped = false;

  void bind() {
    const std::string& path = opts.socket_path;
    if (path.empty()) throw std::runtime_error("dev-tee: no socket path given");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        throw std::runtime_error("dev-tee: " + path + " exists and is not a socket; not replacing it");
      // A live agent answers connect(); a stale file from a crashed run does not.
      local::socket probe(ex);
      boost::system::error_code ec;
      probe.connect(local::endpoint(path), ec);
      if (!ec) throw std::runtime_error("dev-tee: another process is listening on " + path);
      ::unlink(path.c_str());
      spdlog::info("dev-tee: removed stale socket file {}", path);
    }
    local::endpoint ep;
    try {
      ep = local::endpoint(path);
    } catch (const std::exception&) {
      throw std::runtime_error("dev-tee: socket path too long: " + path);
    }
    boost::system::error_code ec;
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("dev-tee: cannot listen on " + path + ": " + ec.message());
    ::chmod(path.c_str(), 0660);
    if (::stat(path.c_str(), &st) == 0) socket_inode = st.st_ino;
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    boost::system::error_code ec;
    acceptor.close(ec);
    for (Stream* s : conns) {
      s->socket().close(ec);
    }
    struct stat st {};
    if (socket_inode != 0 && ::stat(opts.socket_path.c_str(), &st) == 0 && st.st_ino == socket_inode)
      ::unlink(opts.socket_path.c_str());
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    asio::steady_timer backoff(ex);
    while (!stopped) {
      auto [ec, sock] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (stopped || ec == asio::error::operation_aborted) co_return;
        spdlog::warn("dev-tee: accept failed: {}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));  // e.g. out of file descriptors
        co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      asio::co_spawn(ex, session(self, std::move(sock)), asio::detached);
    }
  }

  static http::response<http::string_body> make_response(unsigned status, unsigned version, bool keep_alive,
                                                         std::string body) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::server, "private-inference-dev-tee (simulated)");
    res.set(http::field::content_type, "application/json");
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  static asio::awaitable<void> session(std::shared_ptr<Impl> self, local::socket sock) {
    Stream stream(std::move(sock));
    self->conns.insert(&stream);
    struct Unregister {
      Impl* impl;
      Stream* s;
      ~Unregister() { impl->conns.erase(s); }
    } unregister{self.get(), &stream};

    beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(self->opts.body_limit);
      stream.expires_after(self->opts.idle_timeout);
      auto [read, ec] = co_await net::async_read_request(stream, buf, parser);
      http::response<http::string_body> res;
      bool keep_alive = false;
      if (read == net::RequestRead::TooLarge) {
        res = make_response(413, 11, false,
                            error_body("request body larger than " + std::to_string(self->opts.body_limit) + " bytes"));
      } else if (read == net::RequestRead::Malformed) {
        res = make_response(400, 11, false, error_body("malformed HTTP request: " + ec.message()));
      } else if (read == net::RequestRead::Closed) {
        break;  // closed, timed out or aborted
      } else {
        const auto& req = parser.get();
        keep_alive = req.keep_alive();
        const std::string target = normalize_target(std::string_view(req.target()));
        Reply r = self->service(std::string_view(req.method_string()), target, req.body());
        spdlog::debug("dev-tee: {} {} -> {}", std::string_view(req.method_string()),
                      std::string_view(target).substr(0, target.find('?')), r.status);
        res = make_response(r.status, req.version(), keep_alive, std::move(r.body));
      }
      if (self->stopped) break;
      stream.expires_after(self->opts.idle_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      (void)wn;
      if (wec || !keep_alive || self->stopped) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
    stream.socket().close(ignored);
  }
};

Server::Server(asio::any_io_executor ex, Options opts, const ServiceFactory& make_service) {
  if (opts.fixture_path.empty()) opts.fixture_path = default_fixture_path();
  Fixture fixture = load_fixture(opts.fixture_path);
  if (!opts.instance_id.empty()) {
    if (opts.instance_id.size() > 64 || !from_hex(opts.instance_id))
      throw std::runtime_error("--instance-id must be hex, at most 64 digits");
    if (!fixture.info) fixture.info.emplace();
    (*fixture.info)["instance_id"] = opts.instance_id;
  }
  KeyDeriver keys = KeyDeriver::open(opts.state_dir);
  if (!keys.persistent())
    spdlog::warn("dev-tee: no --state dir: keys come from a random per-process seed and change on every restart");
  Handler handler(std::move(fixture), keys);
  Service service;
  if (make_service) {
    service = make_service(std::move(handler));
  } else {
    service = [h = std::move(handler)](std::string_view method, std::string_view target, std::string_view body) {
      return h.handle(method, target, body);
    };
  }
  impl_ = std::make_shared<Impl>(std::move(ex), std::move(opts), std::move(service));
  impl_->bind();
}

Server::~Server() { stop(); }

void Server::start() {
  if (impl_->started || impl_->stopped) return;
  impl_->started = true;
  asio::co_spawn(impl_->ex, impl_->accept_loop(), asio::detached);
}

void Server::stop() {
  if (impl_) impl_->stop();
}

const std::string& Server::socket_path() const { return impl_->opts.socket_path; }

}  // namespace pi::devtee
