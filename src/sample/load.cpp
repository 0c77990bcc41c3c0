#include "src/sample/load.h"

#include <algorithm>
#include <map>

#include "src/ckpt/checkpoint.h"
#include "src/core/error.h"

namespace sy {

std::vector<float> flat_params(
    const ParamTable& table,
    const std::function<const std::vector<float>*(const std::string&)>& find,
    const std::string& source) {
  std::vector<float> flat(table.total_numel(), 0.0f);
  for (const ParamSpec& p : table.specs()) {
    const std::vector<float>* src = find(p.name);
    if (!src) throw UsageError(source + ": tensor /" + p.name + " is missing");
    if (src->size() != p.global_numel())
      throw UsageError(source + ": tensor /" + p.name + " has " + std::to_string(src->size()) +
                       " elements, the stored config's model has " +
                       std::to_string(p.global_numel()));
    std::copy(src->begin(), src->end(), flat.begin() + static_cast<std::ptrdiff_t>(p.offset));
  }
  return flat;
}

SamplingModel load_sampling_model(MPI_Comm comm, const std::string& file) {
  ckpt::TrainState st;
  const std::vector<ckpt::WholeTensor> tensors = ckpt::read_model_tensors(comm, file, &st);
  const ckpt::StoredTokenizer stored = ckpt::read_checkpoint_tokenizer(comm, file);
  const std::string source = "checkpoint '" + file + "'";
  SamplingModel m;
  m.step = st.step;
  try {
    m.cfg = parse_config(st.config_yaml, {}, source + " (its stored config)");
  } catch (const UsageError& e) {
    throw ckpt::CheckpointError(file, "/", std::string("root attribute 'config': ") + e.what());
  }
  std::map<std::string, const std::vector<float>*> by_name;
  for (const auto& t : tensors) by_name[t.path] = &t.data;
  m.params = flat_params(
      make_param_table(m.cfg),
      [&](const std::string& name) -> const std::vector<float>* {
        auto it = by_name.find(name);
        return it == by_name.end() ? nullptr : it->second;
      },
      source);
  m.tokenizer = Tokenizer::from_stored(stored.name, stored.model, m.cfg.model.vocab_size, source);
  if (m.tokenizer.vocab_size() > m.cfg.model.vocab_size)
    throw UsageError(source + ": its tokenizer has " + std::to_string(m.tokenizer.vocab_size()) +
                     " pieces, more than model.vocab_size " +
                     std::to_string(m.cfg.model.vocab_size));
  return m;
}

}  // namespace sy
