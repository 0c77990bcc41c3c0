#include "src/sample/load.h"

#include <algorithm>
#include <utility>

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

SamplingModel load_sampling_model(MPI_Comm comm, const std::string& file,
                                  const ckpt::ReadProgress& progress) {
  ckpt::CheckpointModel c = ckpt::read_checkpoint_model(comm, file, progress);
  const std::string source = "checkpoint '" + file + "'";
  SamplingModel m;
  m.step = c.step;
  m.cfg = c.cfg;
  m.params = flat_params(
      make_param_table(m.cfg),
      [&](const std::string& name) -> const std::vector<float>* {
        const ckpt::WholeTensor* t = c.find(name);
        return t ? &t->data : nullptr;
      },
      source);
  m.tokenizer = std::move(c.tokenizer);
  m.notes = std::move(c.notes);
  if (m.tokenizer.vocab_size() > m.cfg.model.vocab_size)
    throw UsageError(source + ": its tokenizer has " + std::to_string(m.tokenizer.vocab_size()) +
                     " pieces, more than model.vocab_size " +
                     std::to_string(m.cfg.model.vocab_size));
  return m;
}

}  // namespace sy
