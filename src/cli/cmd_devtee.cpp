#include "cli/commands.hpp"

namespace pi::cli {
Runner register_dev_tee(CLI::App& app) {
  auto* sub = app.add_subcommand("dev-tee", "Simulated dstack guest agent for development and tests (NOT a TEE)");
  (void)sub;
  return [] { return 2; };
}
}  // namespace pi::cli
