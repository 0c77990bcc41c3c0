#include "src/data/loader.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "kernels/cpu/philox.h"
#include "src/core/error.h"

namespace sy {

namespace {

// Tags the data-order counters so they never coincide with the parameter-init streams, which
// share run.seed as the Philox key.
constexpr uint32_t kDataOrderTag = 0x44415441u;  // "DATA"

// Draw i of epoch e's shuffle: 64 bits of Philox4x32-10 at counter (i, e, tag), key = seed.
uint64_t draw(uint64_t seed, int64_t epoch, int64_t i) {
  const auto ui = static_cast<uint64_t>(i), ue = static_cast<uint64_t>(epoch);
  const philox::Counter ctr{{static_cast<uint32_t>(ui), static_cast<uint32_t>(ui >> 32),
                             static_cast<uint32_t>(ue),
                             static_cast<uint32_t>(ue >> 32) ^ kDataOrderTag}};
  const philox::Counter r = philox::philox4x32(ctr, philox::key_from_seed(seed));
  return static_cast<uint64_t>(r.v[0]) | (static_cast<uint64_t>(r.v[1]) << 32);
}

}  // namespace

std::vector<int64_t> epoch_permutation(uint64_t seed, int64_t epoch, int64_t num_windows) {
  std::vector<int64_t> perm(static_cast<size_t>(num_windows));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  // Fisher-Yates from the top. The modulo's bias is below num_windows / 2^64: irrelevant here,
  // and unlike rejection sampling it keeps one draw per position.
  for (int64_t i = num_windows - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(draw(seed, epoch, i) % static_cast<uint64_t>(i + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

int64_t num_val_windows(int64_t n_val, int64_t seq_len) {
  return n_val >= seq_len + 1 ? (n_val - 1) / seq_len : 0;
}

ReadTokens read_from(const std::vector<int32_t>& tokens) {
  return [&tokens](int64_t first, int64_t count, int32_t* out) {
    SY_CHECK(first >= 0 && count >= 0 && first + count <= static_cast<int64_t>(tokens.size()),
             "tokens [" << first << ", " << first + count << ") of " << tokens.size());
    std::copy_n(tokens.begin() + first, count, out);
  };
}

BatchLoader::BatchLoader(ReadTokens read, int64_t num_tokens, int64_t seq_len, int64_t global_batch,
                         uint64_t seed)
    : read_(std::move(read)),
      seq_len_(seq_len),
      global_batch_(global_batch),
      num_windows_(seq_len > 0 ? (num_tokens - 1) / seq_len : 0),
      seed_(seed) {
  SY_CHECK(seq_len > 0 && global_batch > 0,
           "seq_len " << seq_len << ", global_batch " << global_batch);
  SY_CHECK(num_windows_ >= 1, "train split of " << num_tokens << " tokens holds no window of "
                                                << seq_len + 1 << " tokens");
}

BatchLoader::BatchLoader(const std::vector<int32_t>& train, int64_t seq_len, int64_t global_batch,
                         uint64_t seed)
    : BatchLoader(read_from(train), static_cast<int64_t>(train.size()), seq_len, global_batch,
                  seed) {}

const std::vector<int64_t>& BatchLoader::permutation(int64_t epoch) {
  for (const Cached& c : cache_)
    if (c.epoch == epoch) return c.perm;
  Cached& slot = cache_[next_slot_];
  next_slot_ = 1 - next_slot_;
  slot.perm = epoch_permutation(seed_, epoch, num_windows_);
  slot.epoch = epoch;
  return slot.perm;
}

void BatchLoader::resume_at(int64_t step, int64_t consumed, int64_t tokens_seen) {
  SY_CHECK(step >= 0 && consumed >= 0 && tokens_seen >= 0,
           "resume at step " << step << ", sequence " << consumed << ", token " << tokens_seen);
  base_step_ = step;
  base_consumed_ = consumed;
  base_tokens_ = tokens_seen;
}

int64_t BatchLoader::consumed_before(int64_t step) const {
  SY_CHECK(step >= base_step_, "step " << step << " before the resumed step " << base_step_);
  return base_consumed_ + (step - base_step_) * global_batch_;
}

int64_t BatchLoader::tokens_before(int64_t step) const {
  SY_CHECK(step >= base_step_, "step " << step << " before the resumed step " << base_step_);
  return base_tokens_ + (step - base_step_) * global_batch_ * seq_len_;
}

int64_t BatchLoader::window_of(int64_t step, int64_t j) {
  SY_CHECK(step >= 0 && j >= 0 && j < global_batch_, "step " << step << ", sequence " << j);
  const int64_t g = consumed_before(step) + j;
  return permutation(g / num_windows_)[static_cast<size_t>(g % num_windows_)];
}

void BatchLoader::fill(int64_t step, int64_t first_seq, int64_t num_seqs, int32_t* tokens) {
  SY_CHECK(first_seq >= 0 && num_seqs >= 0 && first_seq + num_seqs <= global_batch_,
           "rows [" << first_seq << ", " << first_seq + num_seqs << ") of a global batch of "
                    << global_batch_);
  const int64_t row = seq_len_ + 1;
  for (int64_t s = 0; s < num_seqs; ++s)
    read_(window_of(step, first_seq + s) * seq_len_, row, tokens + s * row);
}

void fill_val_windows(const ReadTokens& read, int64_t n_val, int64_t seq_len, int64_t first,
                      int64_t num, int32_t* tokens) {
  SY_CHECK(first >= 0 && num >= 0 && (first + num) * seq_len + 1 <= n_val,
           "validation windows [" << first << ", " << first + num << ") beyond the split");
  for (int64_t i = 0; i < num; ++i)
    read((first + i) * seq_len, seq_len + 1, tokens + i * (seq_len + 1));
}

void fill_val_windows(const std::vector<int32_t>& val, int64_t seq_len, int64_t first, int64_t num,
                      int32_t* tokens) {
  fill_val_windows(read_from(val), static_cast<int64_t>(val.size()), seq_len, first, num, tokens);
}

}  // namespace sy
