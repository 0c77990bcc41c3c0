// The training batch order (SPEC section 3 "Data order"): which sequences make up the global
// batch of step t depends only on (seed, t, the train split), never on the parallel layout, so a
// data-parallel rank or a micro-batch asks for its slice [first_seq, first_seq + num_seqs) and
// gets exactly the rows a 1-rank run would put there.
//
// Letters: T = seq_len, GB = global_batch, W = number of windows.
// The train split is cut into W = (n_train - 1) / T windows of T + 1 tokens at stride T (window w
// = train[w*T .. w*T + T]: T inputs and their T next-token targets). Sequence j of step t has the
// global index g = t * GB + j (after resume_at: the position the checkpoint stored plus GB per
// step since, so a run resumed with another global batch neither skips nor repeats sequences);
// it lies in epoch e = g / W at position g % W of that epoch's
// permutation of the windows, a Fisher-Yates shuffle driven by a counter-based generator keyed by
// (seed, e). So every window is seen once per epoch, and the order is the same on every platform
// (no std:: distributions, whose output is implementation-defined).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace sy {

// The loader's position, all a checkpoint needs to resume the same order: the step, and the
// sequences of the epoch stream consumed before it (step * GB while the global batch never
// changed; /state/data's consumed_sequences).
struct LoaderState {
  uint64_t seed = 0;
  int64_t step = 0;
  int64_t consumed = 0;

  bool operator==(const LoaderState&) const = default;
};

// out[0 .. count) (=) tokens [first, first + count) of a split: from memory, or from the file
// (TokenSplitReader::read, the trainer's).
using ReadTokens = std::function<void(int64_t first, int64_t count, int32_t* out)>;

class BatchLoader {
 public:
  // The train split of `num_tokens` tokens, read through `read`. Needs at least T + 1 tokens.
  BatchLoader(ReadTokens read, int64_t num_tokens, int64_t seq_len, int64_t global_batch,
              uint64_t seed);
  // `train` must outlive the loader (it is viewed, not copied).
  BatchLoader(const std::vector<int32_t>& train, int64_t seq_len, int64_t global_batch,
              uint64_t seed);

  // tokens: [num_seqs, T + 1] (=), rows first_seq .. first_seq + num_seqs - 1 of step's global
  // batch; 0 <= first_seq, first_seq + num_seqs <= GB.
  void fill(int64_t step, int64_t first_seq, int64_t num_seqs, int32_t* tokens);

  // The window (start token / T) of sequence j of step's global batch.
  int64_t window_of(int64_t step, int64_t j);

  // Continue a run whose checkpoint stored `consumed` sequences and `tokens_seen` tokens before
  // `step`: sequence j of step t >= step is then global index consumed + (t - step) * GB + j.
  void resume_at(int64_t step, int64_t consumed, int64_t tokens_seen);

  // The global index of sequence 0 of `step` (step >= the resumed step).
  int64_t consumed_before(int64_t step) const;
  // Training tokens consumed before `step`: the resumed count plus GB * T per step since.
  int64_t tokens_before(int64_t step) const;

  // What a checkpoint stores to resume at `next_step`.
  LoaderState state(int64_t next_step) const {
    return {seed_, next_step, consumed_before(next_step)};
  }

  int64_t num_windows() const { return num_windows_; }
  int64_t global_batch() const { return global_batch_; }
  uint64_t seed() const { return seed_; }

 private:
  const std::vector<int64_t>& permutation(int64_t epoch);

  ReadTokens read_;
  int64_t seq_len_, global_batch_, num_windows_;
  uint64_t seed_;
  int64_t base_step_ = 0, base_consumed_ = 0, base_tokens_ = 0;  // resume_at
  // The last two epochs' permutations: a step may straddle an epoch boundary, and micro-batches
  // of one step are filled in turn, so two slots never recompute within a step.
  struct Cached {
    int64_t epoch = -1;
    std::vector<int64_t> perm;
  };
  Cached cache_[2];
  int next_slot_ = 0;
};

// The permutation of [0, num_windows) for (seed, epoch), exposed for tests.
std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t num_windows);

// Validation windows (SPEC section 3): window i = val[i*T .. i*T + T], non-overlapping inputs,
// in file order; this many fit in a split of n_val tokens.
int64_t num_val_windows(int64_t n_val, int64_t seq_len);

// tokens[num, T + 1] (=) validation windows first .. first + num - 1 (as num_val_windows counts
// them), for the evaluation forwards, of a split of n_val tokens read through `read`.
void fill_val_windows(const ReadTokens& read, int64_t n_val, int64_t seq_len, int64_t first,
                      int64_t num, int32_t* tokens);
// The same from a split in memory.
void fill_val_windows(const std::vector<int32_t>& val, int64_t seq_len, int64_t first, int64_t num,
                      int32_t* tokens);

// A ReadTokens over `tokens`, which must outlive it.
ReadTokens read_from(const std::vector<int32_t>& tokens);

}  // namespace sy
