#pragma once
// Each subcommand lives in its own cmd_*.cpp and registers itself on the CLI11 app.
// A registration returns the function to run when that subcommand was chosen.
#include <CLI/CLI.hpp>
#include <functional>

namespace pi::cli {
using Runner = std::function<int()>;
Runner register_serve(CLI::App& app);
Runner register_dev_tee(CLI::App& app);
Runner register_verify(CLI::App& app);
Runner register_policy(CLI::App& app);
Runner register_healthcheck(CLI::App& app);
}  // namespace pi::cli
