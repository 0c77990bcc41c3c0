// `switchyard ckpt`: not built yet (registers nothing until its issue lands).
#include <vector>

#include "app/commands.h"

namespace sy::app {

void add_ckpt_commands(CLI::App& /*root*/, std::vector<Command>& /*out*/) {}

}  // namespace sy::app
