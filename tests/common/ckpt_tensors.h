// Every tensor of a checkpoint as global tensors, for tests that compare checkpoints.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/model/params.h"

namespace sy::test {

// Every tensor of `file` (model under its name, moments as "m:<name>" and "v:<name>"), read whole
// on this rank alone.
inline std::map<std::string, std::vector<float>> all_tensors(const std::string& file) {
  const ckpt::TrainState st = ckpt::verify_checkpoint(MPI_COMM_SELF, file);
  const Config cfg = parse_config(st.config_yaml, {}, file);
  const ParamTable t = make_param_table(cfg);
  std::vector<float> p(t.total_numel()), m(p.size()), v(p.size());
  ckpt::load_checkpoint(MPI_COMM_SELF, file,
                        ckpt::whole_table_refs(t, p.data(), m.data(), v.data()));
  std::map<std::string, std::vector<float>> out;
  for (const ParamSpec& s : t.specs())
    for (const auto& [prefix, buf] : {std::pair{"", &p}, std::pair{"m:", &m}, std::pair{"v:", &v}})
      out[prefix + s.name].assign(buf->begin() + static_cast<long>(s.offset),
                                  buf->begin() + static_cast<long>(s.offset + s.numel));
  return out;
}

}  // namespace sy::test
