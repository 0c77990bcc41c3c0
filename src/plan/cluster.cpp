#include "src/plan/cluster.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include "src/config/convert.h"
#include "src/config/yaml_load.h"
#include "src/config/yaml_scalar.h"
#include "src/core/error.h"
#include "src/core/number_text.h"

namespace sy::plan {

namespace {

// The least rate (FLOP/s, bytes/s) a cluster file may give: below 1 a step's predicted time
// overflowed to inf, and the tables read "-nan" in every row, ranked at random (QA: 1e-308).
constexpr double kLeastRate = 1.0;
constexpr const char* kBelowLeastRate =
    "at least 1 per second: a smaller rate makes the predicted times infinite";

// A map node of the file whose keys must all be in `allowed`.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    if (!node_.IsMap()) fail("", "expected a mapping of keys");
    for (const auto& kv : node_)
      if (!kv.first.IsScalar()) fail("", "a key that is not a name (a list or a mapping)");
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    const std::string where = full(key);
    throw UsageError("cluster file " + source_ + ": " + where + (where.empty() ? "" : ": ") + what);
  }

  // Every key known, and none twice (yaml-cpp would silently use the first).
  void only(const std::set<std::string>& allowed) const {
    std::set<std::string> seen;
    for (const auto& kv : node_) {
      const auto key = kv.first.as<std::string>();
      if (!allowed.count(key)) fail(key, "unknown key");
      if (!seen.insert(key).second) fail(key, "duplicate key (given twice)");
    }
  }

  bool has(const std::string& key) const { return static_cast<bool>(node_[key]); }

  // A number in [lo, hi]; `hi` catches a figure in the wrong unit (latency_s: 2 meant as 2 us).
  double number(const std::string& key, double lo, bool required, double fallback = 0,
                double hi = std::numeric_limits<double>::max()) const {
    if (!has(key)) {
      if (required) fail(key, "missing (required)");
      return fallback;
    }
    const double v = decoded_number(key);
    if (!std::isfinite(v) || v < lo)
      fail(key, "got " + node_[key].as<std::string>() + ", expected a number >= " + fmt(lo));
    if (v > hi)
      fail(key, "got " + node_[key].as<std::string>() + ", expected at most " + fmt(hi) +
                    " (seconds; 2 us is 2e-6)");
    return v;
  }

  // A rate (FLOP/s, bytes/s) of at least kLeastRate, every value below it (negative, 0, 1e-308)
  // refused alike (QA: -1 was "expected a number >= 0", 0 "must be > 0", 0.5 "at least 1").
  // Optional: absent or 0 is "not given", 0 returned.
  double rate(const std::string& key, bool required) const {
    if (!has(key)) {
      if (required) fail(key, "missing (required)");
      return 0;
    }
    const double v = decoded_number(key);
    if (!required && v == 0) return 0;
    if (!std::isfinite(v)) fail(key, "got " + node_[key].as<std::string>() + ", not a finite rate");
    if (!(v >= kLeastRate))
      fail(key, "got " + node_[key].as<std::string>() + ", must be " +
                    (required ? "" : "0 (not given) or ") + kBelowLeastRate);
    return v;
  }

  int64_t integer(const std::string& key, int64_t lo, bool required, int64_t fallback) const {
    if (!has(key)) {
      if (required) fail(key, "missing (required)");
      return fallback;
    }
    int64_t v = 0;  // decimal, as the config reads it (as<int64_t>() took 010 as 8)
    if (!plain_scalar(node_[key]) || !parse_decimal(node_[key].Scalar(), v))
      fail(key, "expected an integer, got " + config_convert::describe(node_[key]));
    if (v < lo)
      fail(key, "got " + std::to_string(v) + ", expected an integer >= " + std::to_string(lo));
    return v;
  }

  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    bool v = false;
    if (!plain_scalar(node_[key]) || !YAML::convert<bool>::decode(node_[key], v))
      fail(key, "expected true or false");
    return v;
  }

  std::string text(const std::string& key, bool required) const {
    if (!has(key)) {
      if (required) fail(key, "missing (required)");
      return "";
    }
    if (!node_[key].IsScalar()) fail(key, "expected a string");
    return node_[key].as<std::string>();
  }

  Section child(const std::string& key, bool required) const {
    if (!has(key)) {
      if (required) fail(key, "missing (required)");
      return Section(YAML::Node(YAML::NodeType::Map), full(key), source_);
    }
    return Section(node_[key], full(key), source_);
  }

 private:
  double decoded_number(const std::string& key) const {
    double v = 0;
    if (!plain_scalar(node_[key]) || !YAML::convert<double>::decode(node_[key], v))
      fail(key, "expected a number, got " + config_convert::describe(node_[key]));
    return v;
  }
  std::string full(const std::string& key) const {
    if (path_.empty()) return key;
    return key.empty() ? path_ : path_ + "." + key;
  }
  static std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
  }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
};

// The most a latency or a fixed per-layer cost can be: a second is already far past any link or
// kernel launch, so a larger figure is a unit slip (microseconds given as seconds).
constexpr double kMostSeconds = 1.0;

Link parse_link(const Section& s, bool required) {
  s.only({"bandwidth", "latency_s", "shared_by_node"});
  Link l;
  l.bandwidth = s.rate("bandwidth", required);
  l.latency_s = s.number("latency_s", 0, required, 0, kMostSeconds);
  l.shared_by_node = s.boolean("shared_by_node", false);
  return l;
}

}  // namespace

Cluster parse_cluster(const std::string& yaml_text, const std::string& source) {
  const std::vector<YAML::Node> docs = load_yaml_documents(yaml_text, "cluster file " + source);
  if (docs.size() > 1)
    throw UsageError("cluster file " + source + ": " + std::to_string(docs.size()) +
                     " YAML documents (separated by '---'); a cluster file is one");
  YAML::Node root;
  if (!docs.empty()) root = docs.front();
  const Section top(root, "", source);
  top.only({"name", "overlaps_comm", "one_host", "cores", "thread_efficiency", "nodes",
            "ranks_per_node", "memory_bytes", "base_bytes", "compute", "links"});
  Cluster c;
  c.name = top.text("name", true);
  c.overlaps_comm = top.boolean("overlaps_comm", false);
  c.one_host = top.boolean("one_host", false);
  c.cores = top.integer("cores", 0, false, 0);
  c.thread_efficiency = top.number("thread_efficiency", 0, false, 1);
  if (!(c.thread_efficiency > 0 && c.thread_efficiency <= 1))
    top.fail("thread_efficiency", "must be in (0, 1]");
  c.nodes = top.integer("nodes", 1, true, 1);
  c.ranks_per_node = top.integer("ranks_per_node", 1, true, 1);
  // Every rank count the planner derives (nodes x ranks_per_node) fits an int64 with room.
  constexpr int64_t kMostRanks = int64_t{1} << 40;
  if (c.nodes > kMostRanks / c.ranks_per_node)
    top.fail("nodes", "nodes x ranks_per_node = " + std::to_string(c.nodes) + " x " +
                          std::to_string(c.ranks_per_node) + " is more than 2^40 ranks");
  c.memory_bytes = top.number("memory_bytes", 0, false, 0);
  c.base_bytes = top.number("base_bytes", 0, false, 0);

  const Section compute = top.child("compute", true);
  compute.only({"gemm_flops", "gemm_half_dim", "mem_bandwidth", "elementwise_bandwidth",
                "layer_overhead_s"});
  c.gemm_flops = compute.rate("gemm_flops", true);
  c.gemm_half_dim = compute.number("gemm_half_dim", 0, false, 0);
  c.mem_bandwidth = compute.rate("mem_bandwidth", true);
  c.elementwise_bandwidth = compute.rate("elementwise_bandwidth", false);
  c.layer_overhead_s = compute.number("layer_overhead_s", 0, false, 0, kMostSeconds);

  const Section links = top.child("links", true);
  links.only({"intra", "inter", "inter_mpi"});
  c.intra = parse_link(links.child("intra", true), true);
  c.inter = parse_link(links.child("inter", c.nodes > 1), c.nodes > 1);
  if (links.has("inter_mpi")) c.inter_mpi = parse_link(links.child("inter_mpi", true), true);
  return c;
}

std::string cluster_to_yaml(const Cluster& c, const std::string& comments) {
  std::ostringstream o;
  o.precision(6);
  o << comments;
  auto link = [&](const char* name, const Link& l) {
    o << "  " << name << ": {bandwidth: " << l.bandwidth << ", latency_s: " << l.latency_s
      << ", shared_by_node: " << (l.shared_by_node ? "true" : "false") << "}\n";
  };
  o << "name: " << c.name << "\n"
    << "overlaps_comm: " << (c.overlaps_comm ? "true" : "false") << "\n"
    << "one_host: " << (c.one_host ? "true" : "false") << "\n"
    << "cores: " << c.cores << "\n"
    << "thread_efficiency: " << c.thread_efficiency << "\n"
    << "nodes: " << c.nodes << "\n"
    << "ranks_per_node: " << c.ranks_per_node << "\n"
    << "memory_bytes: " << c.memory_bytes << "\n"
    << "base_bytes: " << c.base_bytes << "\n"
    << "compute:\n"
    << "  gemm_flops: " << c.gemm_flops << "\n"
    << "  gemm_half_dim: " << c.gemm_half_dim << "\n"
    << "  mem_bandwidth: " << c.mem_bandwidth << "\n"
    << "  elementwise_bandwidth: " << c.elementwise_bandwidth << "\n"
    << "  layer_overhead_s: " << c.layer_overhead_s << "\n"
    << "links:\n";
  link("intra", c.intra);
  link("inter", c.inter);
  if (c.inter_mpi.bandwidth > 0) link("inter_mpi", c.inter_mpi);
  return o.str();
}

}  // namespace sy::plan
