// `switchyard plot`: not built yet (registers nothing until its issue lands).
#include <vector>

#include "app/commands.h"

namespace sy::app {

void add_plot_command(CLI::App& /*root*/, std::vector<Command>& /*out*/) {}

}  // namespace sy::app
