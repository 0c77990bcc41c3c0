#include "src/train/report.h"

#include <cstdio>
#include <ostream>

namespace sy {

void add_routing_counts(const std::vector<MoeStats>& per_layer, std::vector<int64_t>& selected,
                        int64_t& dropped) {
  size_t at = 0;
  for (const MoeStats& st : per_layer) {
    for (int64_t n : st.selected) selected[at++] += n;
    dropped += st.dropped;
  }
}

void report_step(const Config& cfg, const StepRecord& r, const StepFlops& flops, double eta_s,
                 MetricsWriter* metrics, std::ostream& log) {
  const int64_t GB = cfg.train.global_batch, T = cfg.model.seq_len, K = cfg.moe.top_k;
  const int L = static_cast<int>(cfg.model.n_layers), E = static_cast<int>(cfg.moe.num_experts);
  const double assignments = static_cast<double>(GB * T * K);
  const double tok_s = static_cast<double>(GB * T) / r.step_s;
  const double gflops = flops.total() / r.step_s / 1e9;
  if (metrics) {
    nlohmann::json expert_load = nlohmann::json::array();
    for (int l = 0; l < L; ++l) {
      std::vector<double> frac(static_cast<size_t>(E));
      for (int e = 0; e < E; ++e)
        frac[static_cast<size_t>(e)] =
            static_cast<double>((*r.selected)[static_cast<size_t>(l * E + e)]) / assignments;
      expert_load.push_back(frac);
    }
    nlohmann::json line = {{"step", r.step},
                           {"loss", r.loss.total()},
                           {"lm_loss", r.loss.lm},
                           {"aux_loss", r.loss.aux},
                           {"z_loss", r.loss.z},
                           {"lr", r.lr},
                           {"grad_norm", r.grad_norm},
                           {"tokens_per_s", tok_s},
                           {"step_ms", r.step_s * 1e3},
                           {"a2a_ms", r.a2a_s * 1e3},
                           {"a2a_internode_bytes", r.a2a_internode_bytes},
                           {"a2a_intranode_bytes", r.a2a_intranode_bytes},
                           {"gflops", gflops},
                           {"peak_mem_bytes", r.peak_mem_bytes},
                           {"dropped_frac", static_cast<double>(r.dropped) / (assignments * L)},
                           {"expert_load", expert_load}};
    // Added key, where several nodes are emulated or real: the step's inter-node bytes, all
    // ranks together (a2a_internode_bytes is rank 0's share).
    if (r.internode_bytes >= 0) line["internode_bytes"] = r.internode_bytes;
    metrics->write(line);
  }
  char buf[360];
  std::snprintf(buf, sizeof buf,
                "step %6lld/%lld | loss %.4f (lm %.4f aux %.4f z %.4f) | lr %.2e | "
                "grad %.3f | %.0f tok/s | %.2f GFLOP/s | a2a %.0f%% | %.1f ms | mem %.0f MiB | "
                "ETA %s\n",
                static_cast<long long>(r.step), static_cast<long long>(cfg.train.steps),
                r.loss.total(), r.loss.lm, r.loss.aux, r.loss.z, r.lr, r.grad_norm, tok_s, gflops,
                100.0 * r.a2a_s / r.step_s, r.step_s * 1e3,
                static_cast<double>(r.peak_mem_bytes) / 1048576.0, format_duration(eta_s).c_str());
  std::string line = buf;
  if (r.internode_bytes >= 0) {  // several nodes: "... | ETA 00:01:02 | inter-node 1.23 MB/step"
    char extra[64];
    std::snprintf(extra, sizeof extra, " | inter-node %.2f MB/step",
                  static_cast<double>(r.internode_bytes) / 1e6);
    line.insert(line.size() - 1, extra);
  }
  log << line << std::flush;
}

void report_eval(int64_t step, double val_loss, MetricsWriter* metrics, std::ostream& log) {
  if (metrics) metrics->write({{"step", step}, {"val_loss", val_loss}});
  char buf[96];
  std::snprintf(buf, sizeof buf, "eval step %lld | val_loss %.4f\n", static_cast<long long>(step),
                val_loss);
  log << buf << std::flush;
}

}  // namespace sy
