// `switchyard bench a2a`: the expert-parallel token exchange, flat vs hierarchical x UCX vs MPI,
// over message sizes and routing skews, modelled on nccl-tests' alltoall_perf (the work is
// src/bench/a2a_bench.h). Run it under mpirun; --ranks-per-node emulates nodes on one host.
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/run_mpi.h"
#include "app/validators.h"
#include "comm/mpi.h"
#include "src/bench/a2a_bench.h"
#include "src/core/error.h"

namespace sy::app {

namespace {

// "1M", "16MiB", "512K", "4096" -> bytes (binary multiples).
int64_t parse_bytes(const std::string& text, const char* option) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw UsageError(std::string(option) + "=" + text + " is not a size (e.g. 1M, 16MiB, 4096)");
  }
  std::string unit = text.substr(used);
  if (unit.size() > 1 && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();
  double scale = 1;
  if (unit == "K" || unit == "k") {
    scale = 1024.0;
  } else if (unit == "M" || unit == "m") {
    scale = 1024.0 * 1024;
  } else if (unit == "G" || unit == "g") {
    scale = 1024.0 * 1024 * 1024;
  } else if (!unit.empty()) {
    throw UsageError(std::string(option) + "=" + text + ": unknown unit '" + unit +
                     "' (K, M or G)");
  }
  // nan, inf and sizes past 2^62 are refused here: their conversion to int64 is undefined.
  const double bytes = value * scale;
  if (!(bytes >= 1.0 && bytes <= 0x1p62))
    throw UsageError(std::string(option) + "=" + text + " must be from 1 byte to 4 EiB");
  return static_cast<int64_t>(bytes);
}

}  // namespace

void add_bench_a2a(CLI::App& bench, std::vector<Command>& out) {
  struct Args {
    A2aBenchOptions opt;
    std::string min_bytes = "1M", max_bytes = "16M";
    std::vector<std::string> algos = {"flat", "hier"}, internodes = {"ucx", "mpi"};
  };
  auto a = std::make_shared<Args>();
  auto* cmd = bench.add_subcommand(
      "a2a",
      "Expert-parallel token exchange (dispatch/combine) like nccl-tests' alltoall_perf: flat "
      "MPI_Alltoallv vs hierarchical (UCX or MPI across nodes, shared memory inside), per size "
      "and routing skew; checks every row (#wrong) and exits 1 if anything is wrong. Run under "
      "mpirun, e.g. mpirun -np 8 switchyard bench a2a --ranks-per-node 4");
  cmd->add_option("--ranks-per-node", a->opt.ranks_per_node,
                  "Emulate nodes of this many consecutive ranks, dividing the rank count (0: the "
                  "nodes MPI reports)")
      ->capture_default_str();
  cmd->add_option("--min-bytes", a->min_bytes,
                  "Smallest expert input per rank, > 0 (K, M, G suffixes)")
      ->capture_default_str();
  cmd->add_option("--max-bytes", a->max_bytes,
                  "Largest expert input per rank, >= --min-bytes; sizes double")
      ->capture_default_str();
  cmd->add_option("--top-k", a->opt.top_k, "Experts per token, in [1, experts], at most 1024")
      ->capture_default_str();
  cmd->add_option("--experts", a->opt.experts,
                  "Global experts (0: 2 per rank, more on few ranks so that --top-k fits)")
      ->capture_default_str()
      ->check(integer_in(0, 1 << 24));
  cmd->add_option("--width", a->opt.width,
                  "Row width in fp32 elements (d_model), from 1 to 2^58 / --top-k")
      ->capture_default_str();
  cmd->add_option("--skew", a->opt.skews,
                  "Routing skews, comma-separated: expert e drawn with weight (e+1)^-skew "
                  "(0 = uniform)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(non_negative_number());
  cmd->add_option("--iters", a->opt.iters, "Timed iterations per row (median reported), >= 1")
      ->capture_default_str();
  cmd->add_option("--warmup", a->opt.warmup, "Untimed iterations first, >= 0")
      ->capture_default_str();
  cmd->add_option("--algos", a->algos, "flat,hier")
      ->delimiter(',')
      ->check(CLI::IsMember({"flat", "hier", "hierarchical"}))
      ->capture_default_str();
  cmd->add_option("--internode", a->internodes, "Inter-node transports of hier: ucx,mpi")
      ->delimiter(',')
      ->check(CLI::IsMember({"ucx", "mpi"}))
      ->capture_default_str();
  cmd->add_option("--timeout", a->opt.timeout_s,
                  "Seconds any rank may wait on the others before the job aborts (0: no limit)")
      ->capture_default_str()
      ->check(non_negative_number());
  cmd->add_option("--seed", a->opt.seed, "Routing seed")->capture_default_str();
  out.push_back(
      {cmd, [a] {
         A2aBenchOptions opt = a->opt;
         opt.min_bytes = parse_bytes(a->min_bytes, "--min-bytes");
         opt.max_bytes = parse_bytes(a->max_bytes, "--max-bytes");
         opt.algos.clear();
         for (const std::string& s : a->algos) {
           opt.algos.push_back(s == "flat" ? comm::A2aAlgo::kFlat : comm::A2aAlgo::kHierarchical);
         }
         opt.internodes.clear();
         for (const std::string& s : a->internodes) {
           opt.internodes.push_back(s == "ucx" ? comm::Internode::kUcx : comm::Internode::kMpi);
         }
         return run_with_mpi([&](const comm::MpiSession& mpi) {
           const int64_t wrong = run_a2a_bench(opt, std::cout);
           if (wrong != 0) {
             if (mpi.world_rank() == 0) {
               std::cerr << "error: " << wrong << " wrong elements or handle fields\n";
             }
             return static_cast<int>(kExitOther);
           }
           return static_cast<int>(kExitOk);
         });
       }});
}

}  // namespace sy::app
