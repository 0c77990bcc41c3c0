#include "src/placement/placement.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "src/config/yaml_load.h"
#include "src/config/yaml_scalar.h"
#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"

namespace sy {

namespace {

constexpr const char* kFormat = "switchyard-expert-placement";
constexpr int kVersion = 1;

std::string line_of(const YAML::Node& n) {
  return n.Mark().is_null() ? "" : " (line " + std::to_string(n.Mark().line + 1) + ")";
}

// An integer scalar of the file, or UsageError naming the file and the key.
int64_t integer(const YAML::Node& n, const std::string& file, const std::string& key) {
  if (!n || !n.IsScalar())
    throw UsageError(file + ": " + key + ": expected an integer" + (n ? line_of(n) : ""));
  // Decimal, as the config reads it: yaml-cpp's as<int64_t>() took 010 as 8 and 0x3 as 3.
  int64_t v = 0;
  if (!plain_scalar(n) || !parse_decimal(n.Scalar(), v))
    throw UsageError(file + ": " + key + ": expected an integer, got '" + n.Scalar() + "'" +
                     line_of(n));
  return v;
}

}  // namespace

ExpertPlacement ExpertPlacement::contiguous(int num_layers, int num_experts, int ep) {
  SY_CHECK(ep > 0 && num_experts % ep == 0, num_experts << " experts over " << ep << " ranks");
  const int L = num_experts / ep;
  std::vector<std::vector<int32_t>> rank_of(static_cast<size_t>(num_layers));
  for (auto& r : rank_of)
    for (int e = 0; e < num_experts; ++e) r.push_back(e / L);
  return from_ranks(std::move(rank_of), ep, "contiguous placement");
}

ExpertPlacement ExpertPlacement::from_ranks(std::vector<std::vector<int32_t>> rank_of, int ep,
                                            const std::string& what) {
  ExpertPlacement p;
  p.P_ = ep;
  p.E_ = rank_of.empty() ? 0 : static_cast<int>(rank_of[0].size());
  if (ep < 1 || p.E_ % ep != 0)
    throw UsageError(what + ": " + std::to_string(p.E_) +
                     " experts do not split over ep = " + std::to_string(ep) + " ranks");
  const int L = p.E_ / ep;
  for (size_t l = 0; l < rank_of.size(); ++l) {
    const auto& r = rank_of[l];
    if (static_cast<int>(r.size()) != p.E_)
      throw UsageError(what + ": layer " + std::to_string(l) + " places " +
                       std::to_string(r.size()) + " experts, layer 0 " + std::to_string(p.E_));
    std::vector<std::vector<int32_t>> on(static_cast<size_t>(ep));
    for (int e = 0; e < p.E_; ++e) {
      const int32_t rank = r[static_cast<size_t>(e)];
      if (rank < 0 || rank >= ep)
        throw UsageError(what + ": layer " + std::to_string(l) + ": expert " + std::to_string(e) +
                         " on EP rank " + std::to_string(rank) + ", not in 0.." +
                         std::to_string(ep - 1));
      on[static_cast<size_t>(rank)].push_back(e);  // ascending: e increases
    }
    std::vector<int32_t> slot(static_cast<size_t>(p.E_));
    for (int rank = 0; rank < ep; ++rank) {
      const auto& mine = on[static_cast<size_t>(rank)];
      if (static_cast<int>(mine.size()) != L)
        throw UsageError(what + ": layer " + std::to_string(l) + ": EP rank " +
                         std::to_string(rank) + " holds " + std::to_string(mine.size()) +
                         " experts; every rank must hold num_experts / ep = " + std::to_string(L));
      for (int j = 0; j < L; ++j)
        slot[static_cast<size_t>(mine[static_cast<size_t>(j)])] = rank * L + j;
    }
    p.experts_on_.push_back(std::move(on));
    p.slot_.push_back(std::move(slot));
  }
  p.rank_of_ = std::move(rank_of);
  return p;
}

bool ExpertPlacement::is_contiguous() const {
  const int L = local_experts();
  for (const auto& r : rank_of_)
    for (int e = 0; e < E_; ++e)
      if (r[idx(e)] != e / L) return false;
  return true;
}

std::string describe_placement(const ExpertPlacement& p, int ranks_per_node, int max_layers) {
  std::ostringstream os;
  for (int l = 0; l < std::min(p.num_layers(), max_layers); ++l) {
    os << (l ? "; " : "") << "layer " << l << ":";
    for (int r = 0; r < p.ep(); ++r) {
      os << (r > 0 && ranks_per_node > 0 && r % ranks_per_node == 0 ? " | [" : " [");
      const auto& on = p.experts_on(l, r);
      for (size_t j = 0; j < on.size(); ++j) os << (j ? " " : "") << on[j];
      os << "]";
    }
  }
  if (p.num_layers() > max_layers) os << "; ...";
  return os.str();
}

ExpertPlacement read_placement(const std::string& path) {
  const std::string text =
      read_text_file(path, "expert placement file", "a file written by `switchyard placement`");
  // One document: a second (after '---') was silently ignored.
  const std::vector<YAML::Node> docs = load_yaml_documents(text, path);
  if (docs.size() > 1)
    throw UsageError(path + ": " + std::to_string(docs.size()) +
                     " YAML documents (separated by '---'); a placement file is one");
  YAML::Node root;
  if (!docs.empty()) root = docs.front();
  if (!root.IsMap()) throw UsageError(path + ": expected a mapping with format: " + kFormat);
  std::set<std::string> seen;  // yaml-cpp keeps the first of a key given twice, silently
  for (const auto& kv : root) {
    const std::string k = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (k != "format" && k != "version" && k != "num_experts" && k != "ep" &&
        k != "ranks_per_node" && k != "layers")
      throw UsageError(path + ": unknown key '" + k + "'" + line_of(kv.first));
    if (!seen.insert(k).second)
      throw UsageError(path + ": " + k + ": duplicate key (given twice)" + line_of(kv.first));
  }
  if (root["ranks_per_node"] && integer(root["ranks_per_node"], path, "ranks_per_node") < 1)
    throw UsageError(path + ": ranks_per_node: " + root["ranks_per_node"].Scalar() +
                     " must be at least 1");
  if (!root["format"] || !root["format"].IsScalar() || root["format"].Scalar() != kFormat)
    throw UsageError(path + ": format: expected '" + kFormat + "' (not a placement file?)");
  if (integer(root["version"], path, "version") != kVersion)
    throw UsageError(path + ": version: " + root["version"].Scalar() + " is not supported (" +
                     std::to_string(kVersion) + " is)");
  const int64_t E = integer(root["num_experts"], path, "num_experts");
  const int64_t P = integer(root["ep"], path, "ep");
  if (E < 1 || P < 1 || E % P != 0)
    throw UsageError(path + ": num_experts = " + std::to_string(E) + " must be a positive " +
                     "multiple of ep = " + std::to_string(P));
  const YAML::Node layers = root["layers"];
  if (!layers || !layers.IsSequence() || layers.size() == 0)
    throw UsageError(path + ": layers: expected a list (one entry per layer)");

  std::vector<std::vector<int32_t>> rank_of;
  for (size_t l = 0; l < layers.size(); ++l) {
    const YAML::Node ranks = layers[l];
    const std::string where = path + ": layers[" + std::to_string(l) + "]";
    if (!ranks.IsSequence() || static_cast<int64_t>(ranks.size()) != P)
      throw UsageError(where + ": expected a list of ep = " + std::to_string(P) +
                       " lists (the experts of each EP rank)" + line_of(ranks));
    std::vector<int32_t> r(static_cast<size_t>(E), -1);
    for (size_t p = 0; p < ranks.size(); ++p) {
      const YAML::Node experts = ranks[p];
      if (!experts.IsSequence())
        throw UsageError(where + "[" + std::to_string(p) + "]: expected a list of experts" +
                         line_of(experts));
      for (const YAML::Node& x : experts) {
        const int64_t e = integer(x, path, "layers[" + std::to_string(l) + "]");
        if (e < 0 || e >= E)
          throw UsageError(where + ": expert " + std::to_string(e) + " is not in 0.." +
                           std::to_string(E - 1) + line_of(x));
        int32_t& slot = r[static_cast<size_t>(e)];
        if (slot >= 0)
          throw UsageError(where + ": expert " + std::to_string(e) + " is repeated (EP ranks " +
                           std::to_string(slot) + " and " + std::to_string(p) + ")" + line_of(x));
        slot = static_cast<int32_t>(p);
      }
    }
    for (int64_t e = 0; e < E; ++e)
      if (r[static_cast<size_t>(e)] < 0)
        throw UsageError(where + ": expert " + std::to_string(e) + " is missing (on no EP rank)" +
                         line_of(ranks));
    rank_of.push_back(std::move(r));
  }
  ExpertPlacement p = ExpertPlacement::from_ranks(std::move(rank_of), static_cast<int>(P), path);
  if (root["ranks_per_node"])
    p.ranks_per_node = static_cast<int>(integer(root["ranks_per_node"], path, "ranks_per_node"));
  return p;
}

void write_placement(const std::string& path, const ExpertPlacement& p,
                     const std::vector<std::string>& comments) {
  std::ostringstream os;
  os << "# Expert placement written by `switchyard placement` (configs/README.md, \"Expert\n"
     << "# placement files\"); use it with parallel.expert_placement: " << path << "\n"
     << "format: " << kFormat << "\nversion: " << kVersion << "\nnum_experts: " << p.num_experts()
     << "\nep: " << p.ep() << "\n";
  if (p.ranks_per_node > 0) os << "ranks_per_node: " << p.ranks_per_node << "\n";
  for (const auto& c : comments) os << "# " << c << "\n";
  os << "layers:  # per layer, per EP rank: the experts it holds\n";
  for (int l = 0; l < p.num_layers(); ++l) {
    os << "  - [";
    for (int r = 0; r < p.ep(); ++r) {
      os << (r ? ", [" : "[");
      const auto& on = p.experts_on(l, r);
      for (size_t j = 0; j < on.size(); ++j) os << (j ? ", " : "") << on[j];
      os << "]";
    }
    os << "]  # layer " << l << "\n";
  }
  try {
    files::atomic_write_text(path, os.str());
  } catch (const Error&) {
    throw;
  } catch (const std::runtime_error& e) {
    // Out of room (a full disk, the file size limit): exit 1, as every output; a path that
    // cannot be written: exit 2. It was 2 for both.
    files::throw_output_error("--output '" + path + "'", e.what());
  }
}

std::shared_ptr<const ExpertPlacement> load_expert_placement(const Config& cfg) {
  const std::string& path = cfg.parallel.expert_placement;
  if (path.empty()) return nullptr;
  const std::string key = "parallel.expert_placement=" + path;
  if (cfg.device == Device::kCuda)
    throw UsageError(key + ": device: cuda keeps the contiguous expert layout (expert i on EP " +
                     "rank i / (E / ep)); drop the key or train with device: cpu");
  ExpertPlacement p;
  try {
    p = read_placement(path);
  } catch (const UsageError& e) {
    throw UsageError(std::string("parallel.expert_placement: ") + e.what());
  }
  auto mismatch = [&](const std::string& what, int64_t file, const std::string& cfg_key,
                      int64_t want) {
    if (file != want)
      throw UsageError(key + ": the placement is for " + what + " = " + std::to_string(file) +
                       ", the config has " + cfg_key + " = " + std::to_string(want));
  };
  mismatch("num_experts", p.num_experts(), "moe.num_experts", cfg.moe.num_experts);
  mismatch("layers", p.num_layers(), "model.n_layers", cfg.model.n_layers);
  mismatch("ep", p.ep(), "parallel.ep", cfg.parallel.ep);
  return std::make_shared<const ExpertPlacement>(std::move(p));
}

void check_placement_route_groups(const ExpertPlacement& p, const RouteGroups& groups,
                                  const std::vector<int>& node_of_ep_rank,
                                  const std::string& what) {
  SY_CHECK(static_cast<int>(node_of_ep_rank.size()) == p.ep(),
           node_of_ep_rank.size() << " nodes for " << p.ep() << " EP ranks");
  const std::set<int> all_nodes(node_of_ep_rank.begin(), node_of_ep_rank.end());
  const int R = groups.nodes ? static_cast<int>(all_nodes.size()) : static_cast<int>(groups.count);
  if (R <= 1) return;
  const int E = p.num_experts(), G = E / R, L = p.local_experts();
  for (int l = 0; l < p.num_layers(); ++l)
    for (int g = 0; g < R; ++g) {
      std::set<int> placed, contiguous;
      for (int e = g * G; e < (g + 1) * G; ++e) {
        placed.insert(node_of_ep_rank[static_cast<size_t>(p.rank_of(l, e))]);
        contiguous.insert(node_of_ep_rank[static_cast<size_t>(e / L)]);
      }
      if (placed.size() > contiguous.size())
        throw UsageError(
            what + ": layer " + std::to_string(l) + " spreads routing group " + std::to_string(g) +
            " (experts " + std::to_string(g * G) + ".." + std::to_string((g + 1) * G - 1) +
            ") over " + std::to_string(placed.size()) + " nodes, the contiguous layout over " +
            std::to_string(contiguous.size()) +
            ": with moe.route_groups on, a placement may only move whole groups between nodes " +
            "(make it with `switchyard placement --route-groups`)");
    }
}

}  // namespace sy
