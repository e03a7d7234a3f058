// `private-inference dev-tee`: flag parsing only; the simulated agent lives in src/devtee.
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

#include "cli/commands.hpp"
#include "devtee/devtee.hpp"
#include "devtee/pki_service.hpp"
#include "devtee/sim_collateral.hpp"
#include "devtee/sim_quote.hpp"
#include "devtee/test_pki.hpp"

namespace pi::cli {
namespace {

struct PkiOpts {
  bool pki = false;
  std::string evidence_report_data;  // hex: print simulated evidence for it and exit
  std::string compose_path;          // --compose: the app-compose.json to serve (its exact bytes)
};

// The exact bytes of an app-compose.json (dstack measures the file's bytes, not a re-serialisation); it must
// be a JSON object, as dstack's AppCompose is.
std::string read_app_compose(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) throw std::runtime_error(path + " is not a JSON object (an app-compose.json)");
  return text;
}

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

int print_evidence(const devtee::TestPki& pki, const std::string& rd_hex, const std::string& app_compose) {
  auto rd = from_hex(rd_hex);
  if (!rd || rd->size() > 64) {
    std::cerr << "dev-tee: --pki-evidence must be at most 64 bytes of hex" << std::endl;
    return 2;
  }
  std::array<std::uint8_t, 64> report_data{};
  std::copy(rd->begin(), rd->end(), report_data.begin());
  auto ev = devtee::make_sim_evidence(pki, report_data,
                                      app_compose.empty() ? devtee::sim_default_app_compose() : app_compose);
  boost::json::object o;
  o["quote"] = to_hex(ev.quote);
  o["event_log"] = ev.event_log;
  o["report_data"] = to_hex(report_data);
  o["info"] = ev.info;
  o["simulated"] = true;
  std::cout << boost::json::serialize(o) << std::endl;
  return 0;
}

// Serves the dstack API on opts.socket_path until SIGINT/SIGTERM: the recorded fixture, or what
// make_service turns it into (--pki).
int serve(const devtee::Options& opts, const devtee::ServiceFactory& make_service) {
  try {
    boost::asio::io_context ioc;
    devtee::Server server(ioc.get_executor(), opts, make_service);
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      spdlog::info("dev-tee: signal {} received, stopping", signo);
      server.stop();
      ioc.stop();
    });
    server.start();
    spdlog::info("dev-tee: fixture {}", opts.fixture_path.empty() ? devtee::default_fixture_path() : opts.fixture_path);
    spdlog::info("dev-tee{} listening on unix:{}", make_service ? " (--pki)" : "", server.socket_path());
    ioc.run();
    server.stop();
    spdlog::info("dev-tee: stopped, socket removed");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "dev-tee: " << e.what() << std::endl;
    return 1;
  }
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
  sub->add_option("--instance-id", opts->instance_id,
                  "the instance_id Info names (hex) instead of the recorded one: one dev-tee per replica of a "
                  "simulated fleet; the recorded event log still names the recorded instance");
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
  sub->add_option("--compose", pki->compose_path,
                  "with --pki: serve this app-compose.json (e.g. deploy/app-compose.json) in Info and measure "
                  "sha256 of its exact bytes in the compose-hash event; default a fixed simulated app")
      ->needs(pki_flag)
      ->check(CLI::ExistingFile);
  sub->add_option("--log-level", *log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  return [opts, pki, log_level, sub]() -> int {
    spdlog::set_level(spdlog::level::from_str(*log_level));
    if (pki->pki) {
      // Nothing but the JSON goes to stdout with --pki-evidence.
      devtee::TestPki p;
      std::string app_compose;
      try {
        if (!pki->compose_path.empty()) app_compose = read_app_compose(pki->compose_path);
        p = prepare_pki(opts->state_dir);
      } catch (const std::exception& e) {
        std::cerr << "dev-tee: --pki: " << e.what() << std::endl;
        return 1;
      }
      if (!pki->evidence_report_data.empty()) return print_evidence(p, pki->evidence_report_data, app_compose);
      std::cerr << "dev-tee: SIMULATED test PKI in " << opts->state_dir << "/pki (root " << opts->state_dir
                << "/pki/root.cert.pem), collateral " << opts->state_dir << "/collateral.json" << std::endl;
      if (opts->socket_path.empty()) return 0;  // files prepared
      spdlog::warn("==============================================================");
      spdlog::warn("  SIMULATED TEE (--pki) — not a security boundary");
      spdlog::warn("  quotes are signed through a TEST PKI; they verify only with");
      spdlog::warn("  `verify --trust-simulated {}`. Never use it in production.", opts->state_dir);
      spdlog::warn("==============================================================");
      if (!app_compose.empty()) spdlog::info("dev-tee: serving app compose {}", pki->compose_path);
      return serve(*opts, devtee::pki_service(std::move(p), std::move(app_compose)));
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
    return serve(*opts, {});
  };
}

}  // namespace pi::cli
