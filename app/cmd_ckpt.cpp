// `switchyard ckpt info <file>` and `switchyard ckpt export <file> --output <file.safetensors>`
// (or `--format hf --output DIR`, src/export/hf_export.h): look inside a checkpoint (step, layout,
// config, tokenizer, every tensor with its shape and whether its checksums verify) and hand the
// model weights to Python. Both read through the same verifying code as --resume; both run on
// one process or under mpirun (rank 0 prints).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/ckpt/files.h"
#include "src/core/error.h"
#include "src/export/hf_export.h"
#include "src/export/safetensors_export.h"

namespace sy::app {

namespace {

std::string utc_time(int64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string loss_text(double v) {
  if (std::isnan(v)) return "none";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

// A large checkpoint takes minutes to verify and read: progress lines on stderr (rank 0).
ckpt::ReadProgress stderr_progress() {
  ckpt::ReadProgress p;
  p.say = [](const std::string& line) { std::cerr << line << "\n" << std::flush; };
  return p;
}

// The data order's position: stored, or derived for a file without it.
std::string consumed_text(const ckpt::TrainState& s) {
  if (!s.consumed_derived) return std::to_string(s.loader.consumed);
  if (s.loader.consumed < 0) return "unknown (not stored)";
  return std::to_string(s.loader.consumed) + " (not stored: step x the stored global_batch)";
}

void print_inspection(const ckpt::Inspection& ins, const ckpt::StoredTokenizer& tok,
                      bool show_config, std::ostream& out) {
  const ckpt::TrainState& s = ins.state;
  int64_t elements = 0, bad = 0;
  for (const auto& t : ins.tensors) {
    elements += ckpt::numel_of(t.shape);
    if (!t.problem.empty()) ++bad;
  }
  char lr[32];
  std::snprintf(lr, sizeof lr, "%.6g", s.lr);
  // A not-sealed file may lack /state's groups: say so rather than print the defaults.
  auto missing = [&](const std::string& group) {
    return std::find(s.state_missing.begin(), s.state_missing.end(), group) !=
           s.state_missing.end();
  };
  auto not_stored = [](const std::string& group) { return "not stored (no /" + group + ")"; };
  out << "checkpoint   " << ins.file << "\n";
  // A file a numerical failure set aside (ckpt::files::set_aside): its values verify, but they
  // gave a loss that is not finite, which nothing below shows.
  if (ins.file.ends_with(ckpt::files::kNonFiniteSuffix))
    out << "set aside    after a numerical failure: these weights gave a loss that is not finite "
           "(--resume auto passes it by)\n";
  out << "format       switchyard-checkpoint, version 1\n"
      << "step         " << s.step << " (tokens seen " << s.tokens_seen << ")\n"
      << "created      " << utc_time(s.created_unix) << " (unix " << s.created_unix << ")\n"
      << "written by   "
      << (s.written_by.empty() ? std::string("not recorded (an older switchyard, or another tool)")
                               : s.written_by)
      << "\n"
      << "layout       " << s.layout << "\n"
      << "optimizer    step " << s.optim_step << ", lr " << lr << "\n"
      << "data loader  "
      << (missing("state/data")
              ? not_stored("state/data")
              : "seed " + std::to_string(s.loader.seed) + ", next step " +
                    std::to_string(s.loader.step) + ", sequences consumed " + consumed_text(s))
      << "\n"
      << "token file   "
      << (s.data_fingerprint.empty() ? std::string("not recorded") : s.data_fingerprint) << "\n"
      << "rng          "
      << (missing("state/rng") ? not_stored("state/rng")
                               : "philox4x32-10, seed " + std::to_string(s.rng.seed) + ", offset " +
                                     std::to_string(s.rng.offset))
      << "\n"
      << "val loss     "
      << (missing("state/train")
              ? not_stored("state/train")
              : "last " + loss_text(s.last_val_loss) + ", best " + loss_text(s.best_val_loss))
      << "\n"
      << "tokenizer    "
      << (tok.name.empty() ? std::string("not recorded (a checkpoint from before tokenizers)")
                           : tok.name)
      << (tok.model.empty()
              ? std::string()
              : ", " + std::to_string(tok.model.size()) + " bytes at /tokenizer/model (verifies)")
      << "\n"
      << "metadata     "
      << (!s.sealed ? std::string("not sealed: written by another tool to SPEC section 5 (no "
                                  "manifest, no metadata checksum); read by the schema")
          : ins.metadata_problem.empty()
              ? std::string("every attribute and the manifest verify (metadata checksum)")
              : "BAD: " + ins.metadata_problem)
      << "\n"
      << "tensors      " << ins.tensors.size() << " datasets, " << elements << " float32 elements, "
      << (bad        ? std::to_string(bad) + " BAD"
          : s.sealed ? std::string("all checksums verify (Fletcher32)")
                     : std::string("all read back (HDF5's own checks)"))
      << "\n";
  size_t width = 0;
  for (const auto& t : ins.tensors) width = std::max(width, t.path.size() + 1);
  for (const auto& t : ins.tensors) {
    std::string name = "/" + t.path;
    name.resize(width, ' ');
    std::string shape = ckpt::shape_string(t.shape);
    if (shape.size() < 16) shape.resize(16, ' ');
    out << "  " << name << "  " << shape << "  ";
    if (t.problem.empty())
      out << "ok (" << t.chunks << (t.chunks == 1 ? " chunk" : " chunks") << ")\n";
    else
      out << "BAD: " << t.problem << "\n";
  }
  if (show_config) {
    out << "config\n";
    std::istringstream cfg(s.config_yaml);
    for (std::string line; std::getline(cfg, line);) out << "  " << line << "\n";
  }
}

void print_removed(const std::vector<std::string>& removed) {
  if (removed.empty()) return;
  std::cout << "removed an earlier export's";
  for (const auto& f : removed) std::cout << " " << f;
  std::cout << "\n";
}

}  // namespace

void add_ckpt_commands(CLI::App& root, std::vector<Command>& out) {
  auto* ckpt = root.add_subcommand("ckpt", "Inspect and export checkpoints (HDF5, SPEC section 5)");
  ckpt->require_subcommand(1);

  struct InfoArgs {
    std::string file;
    bool no_config = false;
  };
  auto ia = std::make_shared<InfoArgs>();
  auto* info = ckpt->add_subcommand(
      "info",
      "Print a checkpoint's step, layout, state and config, and every tensor with its shape and "
      "checksum status (every chunk is read and verified). Exit code 2 when anything is bad.");
  info->add_option("file", ia->file, "Checkpoint file (step_<N>.h5)")->required();
  info->add_flag("--no-config", ia->no_config, "Do not print the stored config");
  out.push_back({info, [ia] {
                   return run_with_mpi([&](const comm::MpiSession& mpi) {
                     const ckpt::Inspection ins = ckpt::inspect_checkpoint(
                         MPI_COMM_WORLD, ia->file, nullptr, stderr_progress());
                     const ckpt::StoredTokenizer tok =
                         ckpt::read_checkpoint_tokenizer(MPI_COMM_WORLD, ia->file);
                     if (mpi.world_rank() == 0)
                       print_inspection(ins, tok, !ia->no_config, std::cout);
                     ckpt::throw_if_bad(MPI_COMM_WORLD, ins);
                     return static_cast<int>(kExitOk);
                   });
                 }});

  struct ExportArgs {
    std::string file, output, format = "safetensors";
    bool allow_approximate = false;
  };
  auto ea = std::make_shared<ExportArgs>();
  auto* exp = ckpt->add_subcommand(
      "export",
      "After verifying the checkpoint, write its model weights: --format safetensors (default): "
      "the /model tensors, float32, under their SPEC names (model/layers/0/attn/wqkv) in one "
      "file; --format hf: a directory Hugging Face transformers loads with "
      "AutoModelForCausalLM.from_pretrained (Mixtral or Qwen2-MoE layout, the one whose math is "
      "the checkpoint's; exit 2 naming what no architecture represents)");
  exp->add_option("file", ea->file, "Checkpoint file (step_<N>.h5)")->required();
  exp->add_option("-o,--output", ea->output,
                  "The .safetensors file (--format safetensors; not a directory) or the "
                  "directory (--format hf; an earlier export's files there are replaced, other "
                  "files kept). Missing parent directories are created")
      ->required();
  exp->add_option("--format", ea->format, "safetensors | hf")
      ->check(CLI::IsMember({"safetensors", "hf"}))
      ->capture_default_str();
  exp->add_flag("--allow-approximate", ea->allow_approximate,
                "--format hf: export what no architecture represents exactly (a router bias, "
                "capacity dropping, group-limited routing, a gate_scale that is not a power of "
                "two) as the nearest model, and say what changes");
  out.push_back(
      {exp, [ea] {
         if (ea->format == "hf")
           return run_with_mpi([&](const comm::MpiSession& mpi) {
             const HfExportReport r = export_hf(
                 MPI_COMM_WORLD, ea->file, {ea->output, ea->allow_approximate, stderr_progress()});
             if (mpi.world_rank() != 0) return static_cast<int>(kExitOk);
             for (const auto& a : r.approximations) std::cout << "approximate: " << a << "\n";
             std::cout << "exported step " << r.step << " as " << r.architecture << " ("
                       << r.tensors << " tensors) to " << ea->output << ":";
             for (const auto& f : r.files) std::cout << " " << f;
             std::cout << "\n";
             print_removed(r.removed);
             for (const auto& n : r.notes) std::cout << "note: " << n << "\n";
             return static_cast<int>(kExitOk);
           });
         if (ea->allow_approximate)
           throw UsageError("--allow-approximate applies to --format hf only");
         check_safetensors_output(ea->output, ea->file);
         return run_with_mpi([&](const comm::MpiSession& mpi) {
           const SafetensorsExportReport r =
               export_safetensors(MPI_COMM_WORLD, ea->file, ea->output, stderr_progress());
           if (mpi.world_rank() != 0) return static_cast<int>(kExitOk);
           std::cout << "exported " << r.tensors << " tensors (" << r.elements
                     << " float32 elements) of step " << r.step << " to " << ea->output << "\n";
           for (const auto& n : r.notes) std::cout << "note: " << n << "\n";
           return static_cast<int>(kExitOk);
         });
       }});
}

}  // namespace sy::app
