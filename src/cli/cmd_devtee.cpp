// `private-inference dev-tee`: flag parsing only; the simulated agent lives in src/devtee.
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "cli/commands.hpp"
#include "devtee/devtee.hpp"
#include "devtee/sim_collateral.hpp"
#include "devtee/sim_quote.hpp"
#include "devtee/test_pki.hpp"

namespace pi::cli {
namespace {

struct PkiOpts {
  bool pki = false;
  std::string evidence_report_data;  // hex: print simulated evidence for it and exit
};

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Test-PKI mode: <state>/pki/ (generated once) and a fresh <state>/collateral.json.
devtee::TestPki prepare_pki(const std::string& state_dir) {
  std::int64_t now = unix_now();
  devtee::TestPki pki = devtee::load_or_create_test_pki(state_dir, now);
  std::string path = state_dir + "/collateral.json";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << devtee::sim_collateral_json(pki, now);
  if (!f) throw std::runtime_error("cannot write " + path);
  return pki;
}

int print_evidence(const devtee::TestPki& pki, const std::string& rd_hex) {
  auto rd = from_hex(rd_hex);
  if (!rd || rd->size() > 64) {
    std::cerr << "dev-tee: --pki-evidence must be at most 64 bytes of hex" << std::endl;
    return 2;
  }
  std::array<std::uint8_t, 64> report_data{};
  std::copy(rd->begin(), rd->end(), report_data.begin());
  auto ev = devtee::make_sim_evidence(pki, report_data, devtee::sim_default_app_compose());
  boost::json::object o;
  o["quote"] = to_hex(ev.quote);
  o["event_log"] = ev.event_log;
  o["report_data"] = to_hex(report_data);
  o["info"] = ev.info;
  o["simulated"] = true;
  std::cout << boost::json::serialize(o) << std::endl;
  return 0;
}

// ---- test-PKI mode over the socket ----
// The recorded-fixture Handler still validates every request and answers /GetKey and /Version; in
// /GetQuote its quote and event log are replaced with SIMULATED ones signed through the test PKI over the
// same (validated, zero-padded) report_data, and /Info is the matching simulated Info.
struct PkiService {
  devtee::TestPki pki;
  devtee::Handler handler;
  std::string app_compose = devtee::sim_default_app_compose();

  devtee::Reply handle(std::string_view method, std::string_view target, std::string_view body) const {
    devtee::Reply r = handler.handle(method, target, body);
    if (r.status != 200) return r;
    std::string_view path = target.substr(0, target.find('?'));
    try {
      if (path == "/GetQuote" || path == "/Info") {
        auto v = boost::json::parse(r.body).as_object();
        std::array<std::uint8_t, 64> rd{};
        if (path == "/GetQuote") {
          auto b = from_hex(v.at("report_data").as_string());
          if (!b || b->size() != 64) return {500, R"({"error":"internal error"})"};
          std::copy(b->begin(), b->end(), rd.begin());
        }
        auto ev = devtee::make_sim_evidence(pki, rd, app_compose);
        boost::json::object vm{{"spec_version", 1}, {"os_image_hash", ev.info.at("os_image_hash")}};
        if (path == "/Info") {
          boost::json::object info = ev.info;
          info["vm_config"] = boost::json::serialize(vm);
          info["simulated"] = true;
          return {200, boost::json::serialize(info)};
        }
        v["quote"] = to_hex(ev.quote);
        v["event_log"] = ev.event_log;
        v["vm_config"] = boost::json::serialize(vm);
        v["simulated"] = true;
        return {200, boost::json::serialize(v)};
      }
    } catch (const std::exception& e) {
      spdlog::error("dev-tee --pki: internal error: {}", e.what());
      return {500, R"({"error":"internal error"})"};
    }
    return r;
  }
};

// Open connections (one thread each): stop() shuts their sockets down and waits for every thread, so none
// outlives the io_context its socket belongs to.
struct Connections {
  std::mutex m;
  std::condition_variable cv;
  std::set<int> fds;
  std::size_t active = 0;

  void stop() {
    std::unique_lock lock(m);
    for (int fd : fds) ::shutdown(fd, SHUT_RDWR);
    cv.wait(lock, [&] { return active == 0; });
  }
};

void serve_connection(boost::asio::local::stream_protocol::socket sock, const PkiService& svc, std::size_t body_limit,
                      Connections& conns) {
  namespace http = boost::beast::http;
  boost::beast::flat_buffer buf;
  boost::system::error_code ec;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(body_limit);
    http::read(sock, buf, parser, ec);
    if (ec == http::error::body_limit) {
      http::response<http::string_body> res{http::status::payload_too_large, 11};
      res.set(http::field::content_type, "application/json");
      res.body() = R"({"error":"request body too large"})";
      res.keep_alive(false);
      res.prepare_payload();
      http::write(sock, res, ec);
      break;
    }
    if (ec) break;
    const auto& req = parser.get();
    devtee::Reply r = svc.handle(std::string_view(req.method_string().data(), req.method_string().size()),
                                 std::string_view(req.target().data(), req.target().size()), req.body());
    http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
    res.set(http::field::content_type, "application/json");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(r.body);
    res.prepare_payload();
    http::write(sock, res, ec);
    if (ec || !res.keep_alive()) break;
  }
  {
    std::lock_guard lock(conns.m);
    conns.fds.erase(sock.native_handle());
  }
  sock.shutdown(boost::asio::socket_base::shutdown_both, ec);
  sock.close(ec);
}

int serve_pki(const devtee::Options& opts, devtee::TestPki pki) {
  namespace fs = std::filesystem;
  using local = boost::asio::local::stream_protocol;
  std::string fixture_path = opts.fixture_path.empty() ? devtee::default_fixture_path() : opts.fixture_path;
  auto svc = std::make_shared<PkiService>(PkiService{
      std::move(pki), devtee::Handler(devtee::load_fixture(fixture_path), devtee::KeyDeriver::open(opts.state_dir))});
  std::error_code fec;
  auto st = fs::symlink_status(opts.socket_path, fec);
  if (!fec && fs::exists(st)) {
    if (!fs::is_socket(st)) {
      std::cerr << "dev-tee: " << opts.socket_path << " exists and is not a socket; refusing to replace it"
                << std::endl;
      return 1;
    }
    fs::remove(opts.socket_path, fec);
  }
  Connections conns;
  boost::asio::io_context ioc;
  local::acceptor acceptor(ioc);
  boost::system::error_code ec;
  acceptor.open(local(), ec);
  if (!ec) acceptor.bind(local::endpoint(opts.socket_path), ec);
  if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "dev-tee: cannot listen on " << opts.socket_path << ": " << ec.message() << std::endl;
    return 1;
  }
  std::function<void()> accept = [&] {
    acceptor.async_accept([&](const boost::system::error_code& aec, local::socket sock) {
      if (aec) return;
      {
        std::lock_guard lock(conns.m);
        conns.fds.insert(sock.native_handle());
        ++conns.active;
      }
      std::thread(
          [&conns, svc, limit = opts.body_limit](local::socket s) mutable {
            serve_connection(std::move(s), *svc, limit, conns);
            svc.reset();
            OPENSSL_thread_stop();  // free this thread's OpenSSL state now: main may exit before the thread does
            std::lock_guard lock(conns.m);
            --conns.active;
            conns.cv.notify_all();
          },
          std::move(sock))
          .detach();
      accept();
    });
  };
  accept();
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& sec, int signo) {
    if (sec) return;
    spdlog::info("dev-tee: signal {} received, stopping", signo);
    boost::system::error_code ignored;
    acceptor.close(ignored);
    ioc.stop();
  });
  spdlog::info("dev-tee (--pki) listening on unix:{}", opts.socket_path);
  ioc.run();
  conns.stop();
  fs::remove(opts.socket_path, fec);
  spdlog::info("dev-tee: stopped, socket removed");
  return 0;
}

}  // namespace

Runner register_dev_tee(CLI::App& app) {
  auto* sub = app.add_subcommand("dev-tee", "Simulated dstack guest agent for development and tests (NOT a TEE)");
  auto opts = std::make_shared<devtee::Options>();
  auto pki = std::make_shared<PkiOpts>();
  auto log_level = std::make_shared<std::string>("info");
  auto* socket =
      sub->add_option("--socket", opts->socket_path, "Unix socket to serve the dstack API on (e.g. /tmp/dstack.sock)");
  sub->add_option("--fixture", opts->fixture_path,
                  "recorded dstack evidence (JSON); default $PI_DEVTEE_FIXTURE or "
                  "<binary dir>/../tests/fixtures/tdx/vllm_proxy_sample_dstack.json");
  auto* state = sub->add_option("--state", opts->state_dir,
                                "directory holding the key seed (created with mode 0700, seed 0600) so keys survive "
                                "restarts; without it keys are random per process");
  auto* pki_flag = sub->add_flag(
      "--pki", pki->pki,
      "SIMULATED test-PKI mode (needs --state): generate/load a test root CA, PCK chain, "
      "TCB signing and attestation keys in STATE/pki/ and write STATE/collateral.json, "
      "for `verify --trust-simulated STATE`; with --socket, GetQuote/Info serve quotes signed through it");
  pki_flag->needs(state);
  auto* ev = sub->add_option("--pki-evidence", pki->evidence_report_data,
                             "with --pki: print a SIMULATED GetQuote answer (TDX v4 quote signed through the test "
                             "PKI, event log, Info) over this report_data (hex, <= 64 bytes) and exit");
  ev->needs(pki_flag);
  socket->excludes(ev);
  sub->add_option("--log-level", *log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  return [opts, pki, log_level, sub]() -> int {
    spdlog::set_level(spdlog::level::from_str(*log_level));
    if (pki->pki) {
      // Nothing but the JSON goes to stdout with --pki-evidence.
      devtee::TestPki p;
      try {
        p = prepare_pki(opts->state_dir);
      } catch (const std::exception& e) {
        std::cerr << "dev-tee: --pki: " << e.what() << std::endl;
        return 1;
      }
      if (!pki->evidence_report_data.empty()) return print_evidence(p, pki->evidence_report_data);
      std::cerr << "dev-tee: SIMULATED test PKI in " << opts->state_dir << "/pki (root " << opts->state_dir
                << "/pki/root.cert.pem), collateral " << opts->state_dir << "/collateral.json" << std::endl;
      if (opts->socket_path.empty()) return 0;  // files prepared
      spdlog::warn("==============================================================");
      spdlog::warn("  SIMULATED TEE (--pki) — not a security boundary");
      spdlog::warn("  quotes are signed through a TEST PKI; they verify only with");
      spdlog::warn("  `verify --trust-simulated {}`. Never use it in production.", opts->state_dir);
      spdlog::warn("==============================================================");
      try {
        return serve_pki(*opts, std::move(p));
      } catch (const std::exception& e) {
        std::cerr << "dev-tee: " << e.what() << std::endl;
        return 1;
      }
    }
    if (opts->socket_path.empty()) {
      std::cerr << "dev-tee: --socket is required" << std::endl << sub->help();
      return 2;
    }
    spdlog::warn("==============================================================");
    spdlog::warn("  SIMULATED TEE — not a security boundary");
    spdlog::warn("  dev-tee serves RECORDED evidence with your report_data written");
    spdlog::warn("  into the quote: its signature no longer verifies. Every answer");
    spdlog::warn("  is labelled \"simulated\": true. Never use it in production.");
    spdlog::warn("==============================================================");

    boost::asio::io_context ioc;
    devtee::Server server(ioc.get_executor(), *opts);
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      spdlog::info("dev-tee: signal {} received, stopping", signo);
      server.stop();
      ioc.stop();
    });
    server.start();
    spdlog::info("dev-tee: fixture {}",
                 opts->fixture_path.empty() ? devtee::default_fixture_path() : opts->fixture_path);
    spdlog::info("dev-tee listening on unix:{}", server.socket_path());
    ioc.run();
    server.stop();
    spdlog::info("dev-tee: stopped, socket removed");
    return 0;
  };
}

}  // namespace pi::cli
