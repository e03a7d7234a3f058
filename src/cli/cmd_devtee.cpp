// `private-inference dev-tee`: flag parsing only; the simulated agent lives in src/devtee.
#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <memory>

#include "cli/commands.hpp"
#include "devtee/devtee.hpp"

namespace pi::cli {

Runner register_dev_tee(CLI::App& app) {
  auto* sub = app.add_subcommand("dev-tee", "Simulated dstack guest agent for development and tests (NOT a TEE)");
  auto opts = std::make_shared<devtee::Options>();
  auto log_level = std::make_shared<std::string>("info");
  sub->add_option("--socket", opts->socket_path, "Unix socket to serve the dstack API on (e.g. /tmp/dstack.sock)")
      ->required();
  sub->add_option("--fixture", opts->fixture_path,
                  "recorded dstack evidence (JSON); default $PI_DEVTEE_FIXTURE or "
                  "<binary dir>/../tests/fixtures/tdx/vllm_proxy_sample_dstack.json");
  sub->add_option("--state", opts->state_dir,
                  "directory holding the key seed (created with mode 0700, seed 0600) so keys survive restarts; "
                  "without it keys are random per process");
  sub->add_option("--log-level", *log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  return [opts, log_level] {
    spdlog::set_level(spdlog::level::from_str(*log_level));
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
