// switchyard: the command line. Parses arguments with CLI11, runs the chosen subcommand (one
// app/cmd_*.cpp each) and turns the exception type into the exit code of SPEC section 9.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "app/validators.h"
#include "src/core/build_id.h"
#include "src/core/error.h"
#include "src/core/interrupt.h"
#include "src/core/suggest.h"
#include "src/train/launch_guard.h"
#include "src/train/signals.h"

namespace {

// The (sub)command the leading words name, down from `app`; `i` is left at the first word past
// them.
CLI::App* named_command(CLI::App& app, int argc, char** argv, int& i) {
  CLI::App* at = &app;
  for (i = 1; i < argc; ++i) {
    CLI::App* next = nullptr;
    for (CLI::App* sub : at->get_subcommands({}))
      if (sub->get_name() == argv[i]) next = sub;
    if (!next) break;
    at = next;
  }
  return at;
}

// A word where a (sub)command is expected that names none: says so with the closest name and the
// choices, since CLI11 says only "A subcommand is required". True when it reported one.
bool unknown_command(CLI::App& app, int argc, char** argv) {
  int i = 1;
  CLI::App* at = named_command(app, argc, argv, i);
  const std::vector<CLI::App*> subs = at->get_subcommands({});
  // A command with subcommands takes flags only (--help): past them, a word is a subcommand
  // (`data --help inspect` printed data's help, exit 0; review).
  if (!subs.empty())
    while (i < argc && argv[i][0] == '-' && std::string_view(argv[i]) != "--") ++i;
  if (i >= argc || argv[i][0] == '-' || subs.empty()) return false;
  for (const CLI::App* sub : subs)
    if (sub->get_name() == argv[i]) return false;  // `data --help prepare`: prepare's help
  std::vector<std::string> names;
  std::string list;
  for (const CLI::App* sub : subs) {
    names.push_back(sub->get_name());
    list += (list.empty() ? "" : ", ") + sub->get_name();
  }
  const std::string where = at == &app ? "" : " of '" + at->get_name() + "'";
  std::cerr << "error: unknown command '" << argv[i] << "'" << where
            << sy::suggestion(argv[i], names) << "; the commands" << where << " are " << list
            << " (see --help)\n";
  return true;
}

// A word like an option that the chosen command does not have: said with the command's closest
// option, since CLI11 reports a missing required option first (`train --conf c.yaml` said only
// "--config is required") or lists stray words without a hint. Stops at `--` and skips numbers
// (an option's negative value). True when it reported one.
bool unknown_option(CLI::App& app, int argc, char** argv) {
  int i = 1;
  CLI::App* at = named_command(app, argc, argv, i);
  if (at->get_prefix_command() || at->get_allow_extras()) return false;  // `guard` passes them on
  std::vector<std::string> longs, shorts;
  for (const CLI::App* a = at; a != nullptr; a = a->get_parent())  // --help, and the root's too
    for (const CLI::Option* o : a->get_options()) {
      for (const std::string& n : o->get_lnames()) longs.push_back("--" + n);
      for (const std::string& n : o->get_snames()) shorts.push_back("-" + n);
    }
  for (; i < argc; ++i) {
    const std::string word = argv[i];
    if (word == "--") break;
    if (word.size() < 2 || word[0] != '-') continue;
    char* end = nullptr;
    std::strtod(word.c_str(), &end);
    if (*end == '\0') continue;  // a number
    const bool is_long = word[1] == '-';
    const std::string name = is_long ? word.substr(0, word.find('=')) : word;
    if (!is_long && name.size() > 2) continue;  // -n4: a short option with its value
    const std::vector<std::string>& known = is_long ? longs : shorts;
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string command;  // e.g. " ckpt export"
    for (const CLI::App* a = at; a != &app; a = a->get_parent())
      command = " " + a->get_name() + command;
    std::cerr << "error: unknown option '" << name << "'" << sy::suggestion(name, longs)
              << "; see 'switchyard" << command << " --help'\n";
    return true;
  }
  return false;
}

// What a command wrote to stdout that could not be written (a full disk, /dev/full) is an
// error, never exit 0 with the output cut short: `rc`, or 1 in place of 0, saying so.
int checked_stdout(int rc) {
  errno = 0;
  std::cout.flush();
  if (std::fflush(stdout) == 0 && !std::cout.fail() && std::ferror(stdout) == 0) return rc;
  const int err = errno;
  std::cerr << "error: writing the standard output failed"
            << (err != 0 ? std::string(": ") + std::strerror(err) : std::string()) << "\n";
  return rc == sy::kExitOk ? sy::kExitOther : rc;
}

// Whether SIGHUP was ignored when this process was exec'd (nohup, a shell's disown): read in
// .preinit_array, before any library's constructor runs, because libucs's replaced it with UCX's
// debug handler, and the SIG_IGN that nohup gave was lost (a logout ended `nohup switchyard
// ...`). Written once there, before main; read-only after.
bool g_hangup_ignored_at_exec = false;

// SIGHUP blocked (SIG_BLOCK) or not (SIG_UNBLOCK) in this thread: held from before_libraries to
// main, and so in the threads libraries start meanwhile (a hangup then goes to main's thread).
void mask_hangup(int how) {
  sigset_t hangup;
  sigemptyset(&hangup);
  sigaddset(&hangup, SIGHUP);
  ::sigprocmask(how, &hangup, nullptr);
}

// A standard stream closed at exec (`<&-`, `>&-`, a launcher that closes them) is held open on
// /dev/null before any library opens a file. Else the next descriptor opened takes its number:
// UCX's and Open MPI's pipes did, and `sample --prompt-file /dev/stdin <&-` waited on one of
// them for ever, and text for standard output would have gone into one. Read-only, so a read
// of 0 is the end of input and a write to 1 or 2 fails with EBADF as it did on the closed one.
void hold_closed_standard_streams() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int held = ::open("/dev/null", O_RDONLY);  // the lowest free number: `fd` itself
    if (held >= 0 && held != fd) {
      ::dup2(held, fd);
      ::close(held);
    }
  }
}

// The first code of ours that runs, before any library's constructor (.preinit_array): notes
// SIGHUP's disposition and holds SIGHUP blocked until main has set it again (libucs's
// constructor takes it for UCX's debug handler, which swallowed a hangup that came before main),
// and, for `train` and `guard`, puts their signal handlers in (a stop that mpirun forwards to a
// rank it has just started, or that SLURM sends a job's processes at once, comes while the
// libraries initialize).
void before_libraries(int argc, char** argv, char**) {
  hold_closed_standard_streams();
  struct sigaction sa {};
  g_hangup_ignored_at_exec = ::sigaction(SIGHUP, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN;
  if (!g_hangup_ignored_at_exec) {
    mask_hangup(SIG_BLOCK);
  }
  const std::string_view command = argc > 1 && argv != nullptr && argv[1] != nullptr ? argv[1] : "";
  if (command == "train")
    sy::PreemptionSignals::catch_before_main(/*hangup=*/!g_hangup_ignored_at_exec);
  else if (command == "guard")
    sy::catch_guard_signals();
}

[[gnu::used,
  gnu::section(".preinit_array")]] void (*const k_before_libraries)(int, char**,
                                                                    char**) = before_libraries;

}  // namespace

int main(int argc, char** argv) {
  // Past the file size limit (ulimit -f) a write must fail with EFBIG, which every writer
  // reports (a checkpoint, an export, a token file, a plot: one message, exit 1, the partial
  // file removed), not raise SIGXFSZ, which killed the process silently (exit 153) and left the
  // .tmp behind.
  std::signal(SIGXFSZ, SIG_IGN);
  // UCX's libucs, loaded with the binary, takes SIGHUP before main runs (its debug signal,
  // UCX_DEBUG_SIGNO), so a hangup ended no command: a closed terminal left `sample --tokens
  // 100000000` running, and a bare `train` swallowed it. It gets the disposition it had at exec
  // back: ignored (nohup) stays ignored; else every command but train and guard ends on it,
  // train stops with a checkpoint as on SIGTERM (the handlers below), and guard passes it on to
  // a training job as SIGUSR1 (its handlers, taken again from libucs here).
  const std::string_view command = argc > 1 ? argv[1] : "";
  if (g_hangup_ignored_at_exec)
    std::signal(SIGHUP, SIG_IGN);
  else if (command == "guard")
    sy::catch_guard_signals();
  else if (command != "train")
    std::signal(SIGHUP, SIG_DFL);
  // `train`: the preemption handlers (in since before_libraries) are taken over here and stay
  // until the process ends, so a SIGUSR1/SIGTERM during start-up ends the run with 76 (not killed:
  // 138) and one after the last checkpoint leaves it to exit 0 (src/train/signals.h).
  std::optional<sy::PreemptionSignals> train_signals;
  if (command == "train")
    train_signals.emplace(sy::PreemptionSignals::Mode::kExitBeforeTraining,
                          sy::PreemptionSignals::Restore::kNever,
                          /*hangup=*/!g_hangup_ignored_at_exec);
  // SIGHUP has its disposition again: one held since before_libraries comes now.
  mask_hangup(SIG_UNBLOCK);
  // Every command but train and guard (which take these signals themselves): Ctrl-C, SIGTERM or
  // SIGHUP removes what the command was writing (a .tmp, a scratch folder) before it ends by
  // the signal (src/core/interrupt.h).
  if (command != "train" && command != "guard") sy::files::install_interrupt_cleanup();

  CLI::App app{"switchyard: a Mixture-of-Experts transformer trainer"};
  app.require_subcommand(1);
  app.set_version_flag("--version", sy::build_name());
  // CLI11's own complaints ("--config is required") start as every other error of ours does.
  // Two are said in our words: a value its type cannot hold ("Could not convert: --nodes =
  // 99999999999999999999"), and a missing subcommand, with the ones there are.
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    const std::string what = e.what(), convert = "Could not convert: ";
    const size_t eq = what.find(" = ");
    if (e.get_name() == "ConversionError" && what.starts_with(convert) && eq != std::string::npos)
      return "error: " + what.substr(convert.size(), eq - convert.size()) + ": '" +
             what.substr(eq + 3) +
             "' is not a value it takes (not a number of its kind, or past its range)\n"
             "Run with --help for more information.\n";
    if (e.get_name() == "RequiredError" && what == "A subcommand is required") {
      // `a` is the whole program: the command that lacks one is the deepest one given.
      const CLI::App* at = a;
      std::string path = "switchyard";
      for (bool deeper = true; deeper;) {
        deeper = false;
        for (const CLI::App* sub : at->get_subcommands({}))
          if (sub->parsed()) {
            at = sub;
            path += " " + sub->get_name();
            deeper = true;
            break;
          }
      }
      std::string names;
      for (const CLI::App* sub : at->get_subcommands({}))
        names += (names.empty() ? "" : ", ") + sub->get_name();
      return "error: " + path + " needs a subcommand: " + names + " (see '" + path + " --help')\n";
    }
    return "error: " + CLI::FailureMessage::simple(a, e);
  });

  std::vector<sy::app::Command> commands;
  sy::app::add_train_command(app, commands);
  sy::app::add_data_commands(app, commands);
  sy::app::add_ckpt_commands(app, commands);
  sy::app::add_bench_commands(app, commands);
  sy::app::add_plot_command(app, commands);
  sy::app::add_placement_command(app, commands);
  sy::app::add_sample_command(app, commands);
  sy::app::add_plan_command(app, commands);
  sy::app::require_written_numbers(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    // `data inspect --help`: no such command, said as without --help (it printed data's help,
    // exit 0; QA).
    if (unknown_command(app, argc, argv)) return sy::kExitUsage;
    return checked_stdout(app.exit(e));
  } catch (const CLI::CallForAllHelp& e) {
    return checked_stdout(app.exit(e));
  } catch (const CLI::CallForVersion& e) {
    return checked_stdout(app.exit(e));
  } catch (const CLI::ParseError& e) {
    // Under a launcher every rank parses the same command line, and rank 0 says what is wrong
    // (it was printed once per rank). Another rank waits 2 s first: exiting at once, it could
    // make mpirun end the job, rank 0 with it, before rank 0's message was out (QA: lost in 4
    // of 30 runs of `bench a2a --skew -1` on 4 ranks); by then mpirun has ended it where rank 0
    // failed too. Where rank 0 did not (a --config on a path only some nodes have), it says
    // its own, naming itself, and exits 2 (exiting 0 silently, the job waited for it at start-up
    // until parallel.timeout_s: review).
    const int rank = sy::launcher_rank();
    for (int slice = 0; rank > 0 && slice < 40; ++slice) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      // `train` takes the SIGTERM with which mpirun ends the job: rank 0 has said it.
      if (const sy::PreemptionSignals* s = sy::PreemptionSignals::installed(); s && s->requested())
        return sy::kExitUsage;
    }
    std::ostringstream said;
    std::streambuf* const cerr_buf = std::cerr.rdbuf(said.rdbuf());
    if (!unknown_command(app, argc, argv) && !unknown_option(app, argc, argv)) app.exit(e);
    std::cerr.rdbuf(cerr_buf);
    std::istringstream lines(said.str());
    for (std::string line; std::getline(lines, line);)
      std::cerr << (rank > 0 ? "rank " + std::to_string(rank) + ": " : std::string()) << line
                << "\n";
    return sy::kExitUsage;
  }

  try {
    for (const auto& c : commands)
      if (c.selected->parsed()) return checked_stdout(c.run());
    std::cerr << "error: no command given (see --help)\n";
    return sy::kExitUsage;
  } catch (const sy::Error& e) {
    sy::app::report_error(e);
    return e.code();
  } catch (const std::exception& e) {
    sy::app::report_error(e);
    return sy::kExitOther;
  }
}
