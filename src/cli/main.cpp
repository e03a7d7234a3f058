#include <spdlog/spdlog.h>

#include <iostream>
#include <vector>

#include "cli/commands.hpp"
#include "version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"private-inference: attested, signed LLM inference (proxy, verifier, dev TEE)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(pi::kVersion));
  std::vector<std::pair<CLI::App*, pi::cli::Runner>> runners;
  auto add = [&](pi::cli::Runner r) { runners.emplace_back(app.get_subcommands({}).back(), std::move(r)); };
  add(pi::cli::register_serve(app));
  add(pi::cli::register_dev_tee(app));
  add(pi::cli::register_verify(app));
  add(pi::cli::register_policy(app));
  add(pi::cli::register_healthcheck(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) {
      try {
        return run();
      } catch (const std::exception& e) {
        spdlog::critical("{}: {}", sub->get_name(), e.what());
        return 1;
      }
    }
  }
  return 2;
}
