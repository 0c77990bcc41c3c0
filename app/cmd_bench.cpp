// `switchyard bench`: not built yet (registers nothing until its issue lands).
#include <vector>

#include "app/commands.h"

namespace sy::app {

void add_bench_commands(CLI::App& /*root*/, std::vector<Command>& /*out*/) {}

}  // namespace sy::app
