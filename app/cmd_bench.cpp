// `switchyard bench ...`: benchmarks that print a table (the work lives in src/bench/).
#include <vector>

#include "app/commands.h"

namespace sy::app {

void add_bench_a2a(CLI::App& bench, std::vector<Command>& out);        // bench_a2a.cpp
void add_bench_train(CLI::App& bench, std::vector<Command>& out);      // bench_train.cpp
void add_bench_moe_layer(CLI::App& bench, std::vector<Command>& out);  // bench_moe_layer.cpp

void add_bench_commands(CLI::App& root, std::vector<Command>& out) {
  auto* bench = root.add_subcommand("bench", "Benchmarks (each prints a table)");
  bench->require_subcommand(1);
  add_bench_a2a(*bench, out);
  add_bench_train(*bench, out);
  add_bench_moe_layer(*bench, out);
}

}  // namespace sy::app
