// `switchyard bench a2a`: not built yet (registers nothing until its issue lands).
#include <vector>

#include "app/commands.h"

namespace sy::app {

void add_bench_a2a(CLI::App& /*bench*/, std::vector<Command>& /*out*/) {}

}  // namespace sy::app
