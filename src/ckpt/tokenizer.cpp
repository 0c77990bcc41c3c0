// read_checkpoint_tokenizer: SPEC section 8's tokenizer in a checkpoint (root attribute
// `tokenizer`, dataset /tokenizer/model), read by rank 0 and broadcast; read_checkpoint_model:
// the model with its config and that tokenizer, for the commands that use it outside training.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"
#include "src/config/config.h"
#include "src/data/tokenizer_h5.h"

namespace sy::ckpt {

using namespace detail;

StoredTokenizer read_checkpoint_tokenizer(MPI_Comm comm, const std::string& file) {
  StoredTokenizer out;
  on_root(comm, [&] {
    h5::ErrorSilencer quiet;
    h5::PropList fapl = serial_fapl();
    const hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl);
    if (id < 0) throw CheckpointError(file, "", h5::file_open_problem());
    h5::File f{id};
    try {
      if (has_attr(f, "tokenizer")) out.name = read_attr_string(f, "tokenizer");
      if (has_attr(f, "tokenizer_vocab_size")) {
        out.vocab_size = read_attr_i64(f, "tokenizer_vocab_size");
        if (out.vocab_size < 1)
          throw std::runtime_error("root attribute 'tokenizer_vocab_size' is " +
                                   std::to_string(out.vocab_size) +
                                   ": a vocabulary size is at least 1");
      }
    } catch (const std::exception& e) {
      throw CheckpointError(file, "/", e.what());
    }
    try {
      out.model = read_tokenizer_model(f);
    } catch (const std::exception& e) {
      throw CheckpointError(file, std::string("/") + kTokenizerModelPath, e.what());
    }
    if (out.name == "sentencepiece" && out.model.empty())
      throw CheckpointError(file, std::string("/") + kTokenizerModelPath,
                            "missing (root attribute tokenizer is sentencepiece)");
  });
  out.name = bcast_string(comm, out.name, 0);
  out.model = bcast_string(comm, out.model, 0);
  MPI_CHECK(MPI_Bcast(&out.vocab_size, 1, MPI_INT64_T, 0, comm));
  return out;
}

const WholeTensor* CheckpointModel::find(const std::string& name) const {
  for (const WholeTensor& t : tensors)
    if (t.path == name) return &t;
  return nullptr;
}

CheckpointModel read_checkpoint_model(MPI_Comm comm, const std::string& file,
                                      const ReadProgress& progress) {
  CheckpointModel m;
  TrainState st;
  m.tensors = read_model_tensors(comm, file, &st, &m.notes, progress);
  StoredTokenizer stored = read_checkpoint_tokenizer(comm, file);
  const std::string source = "checkpoint '" + file + "'";
  m.step = st.step;
  try {
    m.cfg = parse_stored_config(st.config_yaml, source + " (its stored config)");
  } catch (const UsageError& e) {
    throw CheckpointError(file, "/", std::string("root attribute 'config': ") + e.what());
  }
  // Imported ids: those of the training data (its vocabulary may be smaller than the model's).
  // A checkpoint from before tokenizer_vocab_size names that vocabulary in its data fingerprint
  // (token_source_fingerprint: "vocab_size 512, tokenizer imported, ..."): without it, sample
  // picked among a padded model's ids too (QA: ids past the data's in 2000 tokens).
  long long from_fingerprint = 0;
  if (stored.vocab_size == 0 &&
      std::sscanf(st.data_fingerprint.c_str(), "vocab_size %lld,", &from_fingerprint) == 1 &&
      from_fingerprint >= 1 && from_fingerprint <= m.cfg.model.vocab_size)
    stored.vocab_size = from_fingerprint;
  if (stored.vocab_size > m.cfg.model.vocab_size)
    throw CheckpointError(
        file, "/",
        "root attribute 'tokenizer_vocab_size' is " + std::to_string(stored.vocab_size) +
            ", more than its model's model.vocab_size " + std::to_string(m.cfg.model.vocab_size) +
            ": the model cannot give the ids past its own");
  const int64_t vocab = stored.vocab_size > 0 ? stored.vocab_size : m.cfg.model.vocab_size;
  m.tokenizer = Tokenizer::from_stored(stored.name, stored.model, vocab, source);
  return m;
}

}  // namespace sy::ckpt
