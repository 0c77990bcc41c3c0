// Range and consistency rules of the config: everything that a type alone cannot say. Each
// failure names the key path, the value it got and what is allowed, so a user fixes the config
// without reading code. Single-field rules run first: a cross-field rule (d_model % n_heads) may
// then rely on both fields being in range.
#include <cstdint>
#include <string>
#include <utility>

#include "kernels/cpu/router_rule.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/printable.h"

namespace sy {

namespace {

std::string str(int64_t v) {
  return std::to_string(v);
}
std::string str(double v) {
  return number_text(v);
}

[[noreturn]] void bad(const std::string& path, const std::string& got,
                      const std::string& expected) {
  throw UsageError(path + ": got " + got + ", expected " + expected);
}

void at_least(const char* path, int64_t v, int64_t lo) {
  if (v < lo) bad(path, str(v), "an integer >= " + str(lo));
}
void positive(const char* path, double v) {
  if (!(v > 0)) bad(path, str(v), "a number > 0");
}
void non_negative(const char* path, double v) {
  if (!(v >= 0)) bad(path, str(v), "a number >= 0");
}
void divisible(const char* path, int64_t v, const char* by_path, int64_t by) {
  if (v % by != 0)
    bad(path, str(v), "a multiple of " + std::string(by_path) + " (" + str(by) + ")");
}

// Group-limited routing (SPEC section 1) with R groups (r_got: how the config gave R):
// R <= kMaxRouteGroups, R | E, 1 <= M <= R, M * E / R >= k.
void check_route_groups(const MoeConfig& moe, int64_t R, const std::string& r_got) {
  if (R <= 1) return;
  const std::string r_name = "moe.route_groups (" + r_got + ")";
  const int64_t M = moe.route_groups_topk;
  if (R > kMaxRouteGroups)
    bad("moe.route_groups", r_got, "at most " + str(int64_t{kMaxRouteGroups}) + " groups");
  if (moe.num_experts % R != 0)
    bad("moe.num_experts", str(moe.num_experts), "a multiple of " + r_name);
  if (M > R) bad("moe.route_groups_topk", str(M), "at most " + r_name);
  if (M * (moe.num_experts / R) < moe.top_k)
    bad("moe.route_groups_topk", str(M),
        "enough groups to hold moe.top_k (" + str(moe.top_k) + ") experts: route_groups_topk (" +
            str(M) + ") x moe.num_experts (" + str(moe.num_experts) + ") / " + r_name + " = " +
            str(M * (moe.num_experts / R)) + " selectable experts, fewer than moe.top_k");
}

}  // namespace

Config resolve_route_groups(const Config& cfg, int nodes) {
  if (!cfg.moe.route_groups.nodes) return cfg;
  check_route_groups(cfg.moe, nodes,
                     "nodes = the " + str(int64_t{nodes}) + " nodes the expert layout spans");
  Config out = cfg;
  out.moe.route_groups = RouteGroups{nodes, false};
  return out;
}

bool a2a_is_hierarchical(A2aKind a2a, bool spans_nodes) {
  return a2a == A2aKind::kHierarchical || (a2a == A2aKind::kAuto && spans_nodes);
}

Config resolve_a2a(const Config& cfg, bool spans_nodes) {
  Config out = cfg;
  out.parallel.a2a =
      a2a_is_hierarchical(cfg.parallel.a2a, spans_nodes) ? A2aKind::kHierarchical : A2aKind::kFlat;
  return out;
}

void validate_run_bounds(const Config& cfg) {
  const std::string& name = cfg.run.name;
  const std::string shown = std::string(1, '\'') + shortened(name) + '\'';
  // The default run.out_dir is runs/<name>: a name may nest (a/b) but not leave runs/. With
  // run.out_dir set the name is only a name (a 300-byte part was refused as a directory).
  if (cfg.run.out_dir == "runs/" + name) {
    if (!name.empty() &&
        (name.front() == '/' || ("/" + name + "/").find("/../") != std::string::npos))
      bad("run.name", shown,
          "a name that stays under runs/ (no leading '/', no '..'); run.out_dir says where a run "
          "goes");
    // Each part names a directory (runs/<name>): a file system takes 255 bytes (NAME_MAX). A
    // longer one failed as run.out_dir, which the user never set, echoing the whole name.
    size_t part = 0;
    for (const char c : name) {
      part = c == '/' ? 0 : part + 1;
      if (part > 255)
        bad("run.name", shown,
            "at most 255 bytes between slashes (each part names a directory under runs/; or set "
            "run.out_dir)");
    }
  }
  // A look at the model at each evaluation, drawn by rank 0 while the others wait: a bound
  // (`switchyard sample` generates more).
  if (cfg.eval.sample_tokens > 100000)
    bad("eval.sample_tokens", str(cfg.eval.sample_tokens),
        "at most 100000 (switchyard sample --tokens generates longer texts)");
}

void validate_config(const Config& cfg) {
  const auto& run = cfg.run;
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  const auto& par = cfg.parallel;
  const auto& tr = cfg.train;

  if (run.name.empty()) bad("run.name", "''", "a non-empty name");

  // Token ids are int32 in memory: the vocabulary must fit.
  at_least("model.vocab_size", m.vocab_size, 2);
  if (m.vocab_size > INT32_MAX) bad("model.vocab_size", str(m.vocab_size), "at most 2147483647");
  at_least("model.d_model", m.d_model, 1);
  at_least("model.n_layers", m.n_layers, 1);
  at_least("model.n_heads", m.n_heads, 1);
  at_least("model.seq_len", m.seq_len, 1);
  // Positions are int32 (and seq_len + 1, a window of the token file, overflowed int64 at 2^63).
  if (m.seq_len > INT32_MAX) bad("model.seq_len", str(m.seq_len), "at most 2147483647");
  positive("model.norm_eps", m.norm_eps);
  positive("model.rope_theta", m.rope_theta);

  at_least("moe.num_experts", moe.num_experts, 1);
  at_least("moe.top_k", moe.top_k, 1);
  at_least("moe.ffn_hidden", moe.ffn_hidden, 1);
  at_least("moe.shared_experts", moe.shared_experts, 0);
  if (moe.capacity_factor && !(*moe.capacity_factor > 0))
    bad("moe.capacity_factor", str(*moe.capacity_factor), "null (dropless) or a number > 0");
  non_negative("moe.aux_loss_coeff", moe.aux_loss_coeff);
  non_negative("moe.z_loss_coeff", moe.z_loss_coeff);
  non_negative("moe.bias_update_rate", moe.bias_update_rate);
  at_least("moe.overlap_chunks", moe.overlap_chunks, 1);
  positive("moe.gate_scale", moe.gate_scale);
  // The gates are fp32: a larger scale is inf in the first step (exit 3 for a config error).
  if (moe.gate_scale > 3.4e38)
    bad("moe.gate_scale", str(moe.gate_scale), "at most 3.4e38 (the gates are fp32)");
  if (!moe.route_groups.nodes) at_least("moe.route_groups", moe.route_groups.count, 1);
  at_least("moe.route_groups_topk", moe.route_groups_topk, 1);

  at_least("parallel.tp", par.tp, 1);
  at_least("parallel.ep", par.ep, 1);
  at_least("parallel.etp", par.etp, 1);
  at_least("parallel.ranks_per_node", par.ranks_per_node, 0);
  // MPI counts ranks in int: a larger value was cut to 32 bits (2^32 + 1 became 1).
  for (const auto& [key, v] : {std::pair{"parallel.tp", par.tp}, std::pair{"parallel.ep", par.ep},
                               std::pair{"parallel.etp", par.etp},
                               std::pair{"parallel.ranks_per_node", par.ranks_per_node}})
    if (v > INT32_MAX) bad(key, str(v), "at most 2147483647 (a number of ranks)");
  non_negative("parallel.timeout_s", par.timeout_s);
  // The watchdog's clock overflows near 9e9 s, and a bound of weeks bounds nothing: 0 disables it.
  if (par.timeout_s > 1e6)
    bad("parallel.timeout_s", str(par.timeout_s), "at most 1000000 seconds (0 = no timeout)");
  // Less than a second cannot see MPI start: such a value ended every run at its start (exit 1).
  if (par.timeout_s > 0 && par.timeout_s < 1)
    bad("parallel.timeout_s", str(par.timeout_s), "0 (no timeout) or at least 1 second");

  at_least("train.steps", tr.steps, 0);  // 0: evaluate the initial (or resumed) model only
  at_least("train.global_batch", tr.global_batch, 1);
  at_least("train.micro_batch", tr.micro_batch, 1);
  positive("train.lr", tr.lr);
  non_negative("train.min_lr", tr.min_lr);
  at_least("train.warmup_steps", tr.warmup_steps, 0);
  non_negative("train.weight_decay", tr.weight_decay);
  non_negative("train.grad_clip", tr.grad_clip);

  if (cfg.data.path.empty())
    bad("data.path", "nothing (not set)", "the token file written by `switchyard data prepare`");
  at_least("eval.every", cfg.eval.every, 0);
  at_least("eval.sequences", cfg.eval.sequences, 1);
  at_least("eval.sample_tokens", cfg.eval.sample_tokens, 0);
  at_least("checkpoint.every", cfg.checkpoint.every, 0);
  at_least("checkpoint.keep", cfg.checkpoint.keep, 1);
  at_least("log.every", cfg.log.every, 1);

  // ---- cross-field rules ----
  divisible("model.d_model", m.d_model, "model.n_heads", m.n_heads);
  if ((m.d_model / m.n_heads) % 2 != 0)
    bad("model.d_model", str(m.d_model),
        "an even head dim d_model / n_heads for RoPE's rotate-half pairs (got " +
            str(m.d_model / m.n_heads) + " with model.n_heads " + str(m.n_heads) + ")");
  if (moe.top_k > moe.num_experts)
    bad("moe.top_k", str(moe.top_k), "at most moe.num_experts (" + str(moe.num_experts) + ")");
  divisible("moe.num_experts", moe.num_experts, "parallel.ep", par.ep);
  if (moe.score == Score::kSigmoid && moe.z_loss_coeff > 0)
    bad("moe.z_loss_coeff", str(moe.z_loss_coeff),
        "0 with moe.score: sigmoid (the router z-loss is defined for softmax scores only)");
  // With `route_groups: nodes` R is known only with the layout: resolve_route_groups checks it.
  if (!moe.route_groups.nodes)
    check_route_groups(moe, moe.route_groups.count, str(moe.route_groups.count));
  divisible("model.n_heads", m.n_heads, "parallel.tp", par.tp);
  divisible("moe.ffn_hidden", moe.ffn_hidden, "parallel.etp", par.etp);
  if (moe.shared_experts > 0)  // the shared experts' hidden width is split over tp
    divisible("moe.ffn_hidden", moe.ffn_hidden, "parallel.tp", par.tp);
  divisible("train.global_batch", tr.global_batch, "train.micro_batch", tr.micro_batch);
  // warmup_steps > steps is allowed: the whole (short) run is then warmup, which is what a user
  // shortening a run with `--set train.steps=4` expects (learning_rate() documents it).
  if (tr.min_lr > tr.lr)
    bad("train.min_lr", str(tr.min_lr), "at most train.lr (" + str(tr.lr) + ")");
  // The CPU path is the fp32 reference (SPEC section 1); bf16 is a CUDA-path option.
  if (tr.precision == Precision::kBf16 && cfg.device == Device::kCpu)
    bad("train.precision", "bf16", "fp32 with device: cpu (bf16 needs device: cuda)");
}

}  // namespace sy
