// ckpt_helper: writes and checks checkpoints of a REAL model (the param table and initialisation
// of a config) the way a sharded trainer would, so the process-level tests (a rank killed while
// writing, `switchyard ckpt info|export`, h5py, safetensors) have real files before the trainer
// writes its own. Run under mpirun or alone.
//
//   ckpt_helper write --config C --dir D --step N [--keep K] [--set k=v ...]
//                     [--kill-rank R --kill-at STAGE]      SIGKILL rank R at a save stage
//   ckpt_helper check --config C --file F --step N          exit 0 when every tensor is as written
//   ckpt_helper plan --dir D                                prints "resume: <path>" (--resume auto)
//
// Contents (independent of the file): parameters = init_params(table, run.seed); the AdamW
// moments m[i] = expected_m(i, step), v[i] = expected_v(i, step) over the flat table layout.
// Layout: matrices are split by rows of dimension 0 over the ranks (the last rank takes the
// remainder); 1-D tensors are replicated and written by rank 0 only.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/model/init.h"
#include "src/model/params.h"

namespace {

using namespace sy;

float expected_m(size_t i, int64_t step) {
  return static_cast<float>(static_cast<double>(i % 1009) * 1e-4 - 0.05 +
                            1e-3 * static_cast<double>(step));
}
float expected_v(size_t i, int64_t step) {
  return static_cast<float>(static_cast<double>(i % 997) * 1e-6 + 1e-5 * static_cast<double>(step));
}

struct Args {
  std::string mode, config, dir, file, kill_at;
  int64_t step = 0, keep = 0;
  int kill_rank = -1;
  std::vector<std::string> overrides;
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw UsageError("usage: ckpt_helper write|check|plan [options]");
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw UsageError("option " + k + " needs a value");
    const std::string v = argv[++i];
    if (k == "--config")
      a.config = v;
    else if (k == "--dir")
      a.dir = v;
    else if (k == "--file")
      a.file = v;
    else if (k == "--step")
      a.step = std::stoll(v);
    else if (k == "--keep")
      a.keep = std::stoll(v);
    else if (k == "--kill-rank")
      a.kill_rank = std::stoi(v);
    else if (k == "--kill-at")
      a.kill_at = v;
    else if (k == "--set")
      a.overrides.push_back(v);
    else
      throw UsageError("unknown option " + k);
  }
  return a;
}

// Full tensors (as a 1-rank run holds them): params, m, v in the flat table layout.
struct Model {
  ParamTable table;
  std::vector<float> params, m, v;
};

Model make_model(const Config& cfg, int64_t step) {
  Model md{make_param_table(cfg), {}, {}, {}};
  const size_t n = md.table.total_numel();
  md.params.resize(n);
  md.m.resize(n);
  md.v.resize(n);
  init_params(md.params.data(), md.table, cfg.run.seed);
  for (size_t i = 0; i < n; ++i) {
    md.m[i] = expected_m(i, step);
    md.v[i] = expected_v(i, step);
  }
  return md;
}

// This rank's part of a tensor: rows [R*r/P, R*(r+1)/P) of a matrix, or all of a vector.
Slab part_of(const std::vector<int64_t>& shape, int rank, int size, bool* writer) {
  Slab s = Slab::whole(shape);
  if (shape.size() == 1) {
    *writer = rank == 0;
    return s;
  }
  const int64_t R = shape[0];
  s.start[0] = R * rank / size;
  s.block[0] = R * (rank + 1) / size - s.start[0];
  *writer = true;
  return s;
}

int run(const Args& a) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (a.mode == "plan") {
    const auto plan = ckpt::plan_resume(MPI_COMM_WORLD, "auto", a.dir);
    if (rank == 0) std::cout << "resume: " << plan.path << "\n" << plan.message << "\n";
    return 0;
  }
  const Config cfg = load_config(a.config, a.overrides);
  const Model md = make_model(cfg, a.step);

  if (a.mode == "write") {
    // Local copies of this rank's slabs, as a sharded trainer holds them.
    std::vector<std::vector<float>> local;
    std::vector<ckpt::TensorRef> refs;
    const auto whole =
        ckpt::whole_table_refs(md.table, const_cast<float*>(md.params.data()),
                               const_cast<float*>(md.m.data()), const_cast<float*>(md.v.data()));
    local.reserve(whole.size());
    for (const auto& w : whole) {
      bool writer = false;
      const Slab s = part_of(w.global_shape, rank, size, &writer);
      std::vector<float> buf(static_cast<size_t>(s.numel()));
      s.for_each_run(w.global_shape, [&](int64_t g, int64_t l, int64_t n) {
        std::memcpy(buf.data() + l, w.data + g, static_cast<size_t>(n) * sizeof(float));
      });
      local.push_back(std::move(buf));
      refs.push_back({w.path, w.global_shape, s, writer, local.back().data()});
    }
    ckpt::TrainState st;
    st.step = a.step;
    st.tokens_seen = a.step * cfg.train.global_batch * cfg.model.seq_len;
    st.config_yaml = to_yaml(cfg);
    st.layout = ckpt::layout_string(size, 1, 1, 1);
    st.optim_step = a.step;
    st.lr = cfg.train.lr;
    st.loader = {cfg.run.seed, a.step};
    st.rng = {cfg.run.seed, 0};
    ckpt::SaveOptions opt;
    opt.keep = a.keep;
    opt.on_stage = [&](const std::string& stage) {
      if (rank == a.kill_rank && stage == a.kill_at) {
        std::fprintf(stderr, "ckpt_helper: rank %d killing itself at '%s'\n", rank, stage.c_str());
        std::fflush(stderr);
        std::raise(SIGKILL);
      }
    };
    const auto res = ckpt::save_checkpoint(MPI_COMM_WORLD, a.dir, st, refs, opt);
    if (rank == 0) std::cout << "wrote " << res.path << "\n";
    return 0;
  }

  if (a.mode == "check") {
    Model got{make_param_table(cfg), {}, {}, {}};
    const size_t n = got.table.total_numel();
    got.params.assign(n, -1.0f);
    got.m.assign(n, -1.0f);
    got.v.assign(n, -1.0f);
    const auto refs =
        ckpt::whole_table_refs(got.table, got.params.data(), got.m.data(), got.v.data());
    const ckpt::TrainState st = ckpt::load_checkpoint(MPI_COMM_WORLD, a.file, refs);
    int64_t wrong = 0;
    for (size_t i = 0; i < n; ++i)
      wrong += std::memcmp(&got.params[i], &md.params[i], 4) != 0 ||
               std::memcmp(&got.m[i], &md.m[i], 4) != 0 || std::memcmp(&got.v[i], &md.v[i], 4) != 0;
    if (st.step != a.step) ++wrong;
    if (rank == 0)
      std::cout << "checked " << a.file << ": step " << st.step << ", " << wrong
                << " wrong elements\n";
    return wrong == 0 ? 0 : 1;
  }
  throw UsageError("unknown mode '" + a.mode + "'");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  try {
    rc = run(parse(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "ckpt_helper: error: " << e.what() << "\n";
    rc = 2;
  } catch (const std::exception& e) {
    std::cerr << "ckpt_helper: fatal: " << e.what() << "\n";
    rc = 1;
  }
  MPI_Finalize();
  return rc;
}
