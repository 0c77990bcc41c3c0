#include "src/plan/io/plan_inputs.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/plot/run_metrics.h"

namespace sy::plan {

namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path, const char* what) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw UsageError(std::string(what) + " '" + path + "' not found (or not a regular file)");
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in) throw UsageError(std::string(what) + " '" + path + "' cannot be read");
  return s.str();
}

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

// The dataset holding the co-activation counts: /coactivation, else the only one in the file.
std::string coactivation_dataset(hid_t file, const std::string& path) {
  for (const char* name : {"counts", "coactivation"})
    if (H5Lexists(file, name, H5P_DEFAULT) > 0) return name;
  std::vector<std::string> names;
  H5Literate(
      file, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr,
      [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
        static_cast<std::vector<std::string>*>(data)->push_back(name);
        return 0;
      },
      &names);
  if (names.size() != 1)
    throw UsageError("co-activation file '" + path +
                     "': expected a dataset /counts or /coactivation (or exactly one dataset)");
  return names.front();
}

double tokens_attribute(hid_t obj) {
  if (H5Aexists(obj, "tokens") <= 0) return 0;
  h5::Attribute a{H5Aopen(obj, "tokens", H5P_DEFAULT)};
  if (a.get() < 0) return 0;
  double v = 0;
  if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) return 0;
  return v;
}

}  // namespace

Cluster load_cluster(const std::string& path) {
  return parse_cluster(read_text(path, "cluster file"), "'" + path + "'");
}

CoactivationStats read_coactivation_stats(const std::string& path, int64_t E, int64_t top_k) {
  CoactivationStats result;
  std::vector<std::vector<double>>& out = result.pairs;
  std::error_code ec;
  if (!fs::exists(path, ec)) return result;
  h5::ErrorSilencer quiet;
  auto fail = [&](const std::string& what) -> UsageError {
    return UsageError("co-activation file '" + path + "': " + what);
  };
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) throw fail("not a readable HDF5 file");
  h5::File file{fid};
  const std::string name = coactivation_dataset(file, path);
  h5::Dataset ds{H5Dopen2(file, name.c_str(), H5P_DEFAULT)};
  if (ds.get() < 0) throw fail("/" + name + " is not a dataset");
  h5::Dataspace space{H5Dget_space(ds)};
  const int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[3] = {1, 1, 1};
  if (rank != 2 && rank != 3) throw fail("/" + name + " must be [L, E, E] or [E, E]");
  H5Sget_simple_extent_dims(space, dims, nullptr);
  const hsize_t layers = rank == 3 ? dims[0] : 1, e0 = dims[rank - 2], e1 = dims[rank - 1];
  if (static_cast<int64_t>(e0) != E || static_cast<int64_t>(e1) != E)
    throw fail("/" + name + " is " + std::to_string(e0) + " x " + std::to_string(e1) +
               ", the config has moe.num_experts = " + std::to_string(E));
  std::vector<double> all(layers * e0 * e1);
  if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()) < 0)
    throw fail("/" + name + " cannot be read as numbers");
  double tokens = tokens_attribute(ds);
  if (!(tokens > 0)) tokens = tokens_attribute(file);
  const auto EE = static_cast<size_t>(E * E);
  for (hsize_t l = 0; l < layers; ++l) {
    std::vector<double> m(all.begin() + static_cast<long>(l * EE),
                          all.begin() + static_cast<long>((l + 1) * EE));
    double t = tokens, diag = 0;
    for (int64_t i = 0; i < E; ++i) diag += m[static_cast<size_t>(i * E + i)];
    if (!(t > 0) && diag > 0) t = diag / static_cast<double>(top_k);
    if (t > 0)
      for (double& v : m) v /= t;
    out.push_back(std::move(m));
  }
  // /sample [L, S, K]: whole tokens' top-k (the trainer's file); anything else is left out.
  if (H5Lexists(file, "sample", H5P_DEFAULT) > 0) {
    h5::Dataset sd{H5Dopen2(file, "sample", H5P_DEFAULT)};
    h5::Dataspace ss{sd.get() >= 0 ? H5Dget_space(sd) : H5I_INVALID_HID};
    hsize_t sdims[3] = {0, 0, 0};
    if (ss.get() >= 0 && H5Sget_simple_extent_ndims(ss) == 3) {
      H5Sget_simple_extent_dims(ss, sdims, nullptr);
      std::vector<int32_t> all_tokens(sdims[0] * sdims[1] * sdims[2]);
      if (sdims[2] > 0 &&
          H5Dread(sd, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, all_tokens.data()) >= 0) {
        const size_t per_layer = sdims[1] * sdims[2];
        for (hsize_t l = 0; l < sdims[0]; ++l)
          result.sample.emplace_back(all_tokens.begin() + static_cast<long>(l * per_layer),
                                     all_tokens.begin() + static_cast<long>((l + 1) * per_layer));
        result.sample_k = static_cast<int64_t>(sdims[2]);
      }
    }
  }
  return result;
}

RoutingStats load_routing(const std::string& spec, const Config& cfg) {
  RoutingStats r;
  if (spec.empty() || spec == "uniform") return r;
  std::error_code ec;
  if (!fs::is_directory(spec, ec))
    throw UsageError("--routing '" + spec + "': expected 'uniform' or a run directory");
  const std::string metrics = (fs::path(spec) / "metrics.jsonl").string();
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
  CoactivationStats co =
      read_coactivation_stats((fs::path(spec) / "coactivation.h5").string(), E, cfg.moe.top_k);
  r.pairs = std::move(co.pairs);
  r.sample = std::move(co.sample);
  r.sample_k = co.sample_k;
  r.source = metrics + " (mean load of " + std::to_string(steps) + " logged steps" +
             (r.pairs.empty()    ? ", no coactivation.h5"
              : r.sample.empty() ? ", with coactivation.h5's pair counts"
                                 : ", with coactivation.h5's pair counts and "
                                   "token sample") +
             ")";
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

double host_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  double bytes = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0;
  for (const char* f :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const double limit = cgroup_limit(f);
    if (limit > 0) bytes = bytes > 0 ? std::min(bytes, limit) : limit;
  }
  return bytes;
}

}  // namespace sy::plan
