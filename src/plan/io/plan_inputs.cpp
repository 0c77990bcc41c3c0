#include "src/plan/io/plan_inputs.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/core/run_files.h"
#include "src/placement/coactivation_file.h"
#include "src/plot/run_metrics.h"

namespace sy::plan {

namespace fs = std::filesystem;

namespace {

// A number in a cgroup file ("max" = no limit: 0).
double cgroup_limit(const char* path) {
  std::ifstream in(path);
  std::string v;
  if (!(in >> v) || v == "max") return 0;
  try {
    const double x = std::stod(v);
    return x > 0 && x < 1e18 ? x : 0;  // v1 reports ~2^63 for "no limit"
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

Cluster load_cluster(const std::string& path) {
  return parse_cluster(read_text_file(path, "cluster file", "a YAML file"), "'" + path + "'");
}

bool load_coactivation(const std::string& path, int64_t E, int64_t K, RoutingStats& r) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  const Coactivation c = read_coactivation(path);
  if (c.num_experts != E)
    throw UsageError("co-activation file '" + path + "' counts " + std::to_string(c.num_experts) +
                     " experts, the config has moe.num_experts = " + std::to_string(E));
  // Its pairs and token sample are of the run's top-k: another k would be counted on them.
  if (c.top_k != K)
    throw UsageError("co-activation file '" + path + "' is of a run with top-k " +
                     std::to_string(c.top_k) + ", the config has moe.top_k = " + std::to_string(K));
  const auto EE = static_cast<size_t>(E * E);
  const int64_t S = c.sample_tokens();
  for (int l = 0; l < c.num_layers; ++l) {
    if (c.tokens > 0) {
      const int64_t* n = c.layer_counts(l);
      std::vector<double>& m = r.pairs.emplace_back(EE);
      for (size_t i = 0; i < EE; ++i)
        m[i] = static_cast<double>(n[i]) / static_cast<double>(c.tokens);
    }
    if (S > 0) r.sample.emplace_back(c.layer_sample(l), c.layer_sample(l) + S * c.top_k);
  }
  if (S > 0) r.sample_k = c.top_k;
  return true;
}

namespace {

// A step's expert_load is, per layer, fractions of the assignments (SPEC 6): each in [0, 1], the
// layer's summing to 1 (within the digits a hand-edited line keeps). Others priced a step of
// "-nan ms" (1e308), or memory below the uniform (all zero), exit 0 (QA).
void check_expert_load(const TrainPoint& t, const std::string& spec) {
  for (size_t l = 0; l < t.expert_load.size(); ++l) {
    const std::string where = "--routing '" + spec + "': metrics.jsonl step " +
                              std::to_string(t.step) + ", expert_load layer " + std::to_string(l);
    double sum = 0;
    for (size_t e = 0; e < t.expert_load[l].size(); ++e) {
      const double v = t.expert_load[l][e];
      if (!(v >= 0.0 && v <= 1.0))
        throw UsageError(where + ", expert " + std::to_string(e) + ": " + number_text(v) +
                         " is not a fraction of the assignments (in [0, 1])");
      sum += v;
    }
    if (std::abs(sum - 1.0) > 1e-3)
      throw UsageError(where + ": its fractions sum to " + number_text(sum) +
                       ", not 1 (each is a share of the layer's assignments)");
  }
}

}  // namespace

RoutingStats load_routing(const std::string& spec, const Config& cfg) {
  RoutingStats r;
  if (spec.empty() || spec == "uniform") return r;
  std::error_code ec;
  if (!fs::is_directory(spec, ec))
    throw UsageError("--routing '" + spec + "': expected 'uniform' or a run directory");
  const std::string metrics = metrics_path(spec);
  const RunMetrics m = read_run_metrics(metrics);
  const int64_t E = cfg.moe.num_experts;
  if (m.num_experts() != E)
    throw UsageError("--routing '" + spec + "': its expert_load has " +
                     std::to_string(m.num_experts()) +
                     " experts, the config's moe.num_experts is " + std::to_string(E));
  // The mean share of every expert over the logged steps, per layer, renormalised.
  r.load.assign(static_cast<size_t>(m.num_layers()), std::vector<double>(static_cast<size_t>(E)));
  r.peak_load = r.load;
  int steps = 0;
  for (const TrainPoint& t : m.train) {
    if (static_cast<int>(t.expert_load.size()) != m.num_layers()) continue;
    check_expert_load(t, spec);
    ++steps;
    r.step_loads.push_back(t.expert_load);
    for (size_t l = 0; l < t.expert_load.size(); ++l)
      for (size_t e = 0; e < t.expert_load[l].size() && e < r.load[l].size(); ++e) {
        r.load[l][e] += t.expert_load[l][e];
        r.peak_load[l][e] = std::max(r.peak_load[l][e], t.expert_load[l][e]);
      }
  }
  for (auto& layer : r.load) {
    double sum = 0;
    for (double v : layer) sum += v;
    for (double& v : layer) v = sum > 0 ? v / sum : 1.0 / static_cast<double>(E);
  }
  const bool coactivation =
      load_coactivation((fs::path(spec) / "coactivation.h5").string(), E, cfg.moe.top_k, r);
  const std::string with = r.pairs.empty()    ? r.sample.empty() ? "" : "token sample"
                           : r.sample.empty() ? "pair counts"
                                              : "pair counts and token sample";
  r.source = metrics + " (mean load of " + std::to_string(steps) + " logged steps" +
             (!coactivation  ? ", no coactivation.h5"
              : with.empty() ? ", coactivation.h5 has counted no tokens yet"
                             : ", with coactivation.h5's " + with) +
             ")";
  // Another depth is planned from the measured layers, the last one standing in for those past it.
  const int64_t L = cfg.model.n_layers, measured = m.num_layers();
  if (measured != L)
    r.source += "; note: the run measured " + std::to_string(measured) +
                " layers, the config has model.n_layers = " + std::to_string(L) +
                (measured < L ? ": layers past " + std::to_string(measured) + " use its last one"
                              : ": its first " + std::to_string(L) + " are used");
  return r;
}

TokenExtents token_file_extents(const std::string& path) {
  TokenExtents t;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return t;
  h5::ErrorSilencer quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0) return t;
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) return t;
  h5::File file{fid};
  auto extent = [&](const char* name, double& out) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return false;
    h5::Dataset ds{H5Dopen2(file, name, H5P_DEFAULT)};
    if (ds.get() < 0) return false;
    h5::Dataspace space{H5Dget_space(ds)};
    if (space.get() < 0 || H5Sget_simple_extent_ndims(space) != 1) return false;
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, nullptr);
    out = static_cast<double>(n);
    return true;
  };
  t.ok = extent("train", t.train) && extent("val", t.val);
  return t;
}

double cgroup_memory_limit(const std::string& proc_self_cgroup, const std::string& root) {
  double lowest = 0;
  auto take = [&](const fs::path& file) {
    const double limit = cgroup_limit(file.c_str());
    if (limit > 0) lowest = lowest > 0 ? std::min(lowest, limit) : limit;
  };
  // A group and each of its ancestors up to the hierarchy's root: any of them may set the limit.
  auto walk = [&](const fs::path& hierarchy, std::string group, const char* file) {
    while (true) {
      take(hierarchy / fs::path(group).relative_path() / file);
      if (group.empty() || group == "/") break;
      const size_t slash = group.find_last_of('/');
      group = slash == std::string::npos ? "" : group.substr(0, slash);
    }
  };
  std::istringstream lines(proc_self_cgroup);
  for (std::string line; std::getline(lines, line);) {
    // "hierarchy-id:controllers:path"
    const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1), group = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) {
      walk(root, group, "memory.max");
    } else {
      std::istringstream names(controllers);
      for (std::string c; std::getline(names, c, ',');)
        if (c == "memory") walk(fs::path(root) / "memory", group, "memory.limit_in_bytes");
    }
  }
  return lowest;
}

double host_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  double bytes = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0;
  std::ifstream in("/proc/self/cgroup");
  std::ostringstream text;
  text << in.rdbuf();
  const double limit = cgroup_memory_limit(text.str(), "/sys/fs/cgroup");
  if (limit > 0) bytes = bytes > 0 ? std::min(bytes, limit) : limit;
  return bytes;
}

}  // namespace sy::plan
