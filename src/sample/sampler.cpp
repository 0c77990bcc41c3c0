#include "src/sample/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "kernels/cpu/philox.h"
#include "src/core/error.h"
#include "src/core/number_text.h"

namespace sy {

namespace {

// Whether `s` ends in what may be the start of a UTF-8 character still to be completed: an
// unfinished multi-byte sequence, or U+FFFD, which SentencePiece writes for each byte of one.
bool ends_incomplete(const std::string& s) {
  static const std::string kReplacement = "\xEF\xBF\xBD";
  if (s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0) return true;
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const auto c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back;
  }
  return false;
}

// Ids before the first one the stream decodes, for the first pieces to read as they do in context.
constexpr size_t kContextIds = 4;

}  // namespace

void check_sample_options(const SampleOptions& o) {
  if (o.tokens < 1) throw UsageError("--tokens " + std::to_string(o.tokens) + " must be >= 1");
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    throw UsageError("--temperature " + number_text(o.temperature) +
                     " must be finite and >= 0 (0 = greedy)");
  if (o.top_k < 0) throw UsageError("--top-k " + std::to_string(o.top_k) + " must be >= 0");
  if (!(o.top_p > 0.0 && o.top_p <= 1.0))
    throw UsageError("--top-p " + number_text(o.top_p) + " must be in (0, 1]");
}

double sample_uniform(uint64_t seed, int64_t index) {
  const auto i = static_cast<uint64_t>(index);
  const philox::Counter ctr{{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0u, 0u}};
  return philox::u01(philox::philox4x32(ctr, philox::key_from_seed(seed)).v[0]);
}

int32_t pick_token(std::span<const float> logits, const SampleOptions& o, double u) {
  const int n = static_cast<int>(logits.size());
  SY_CHECK(n > 0, "pick_token: no logits");
  // NaN (or +inf) logits come from weights that are not finite, or finite but so large that the
  // forward pass overflows fp32 (a checkpoint's values are checked finite as it is read): nothing
  // to sample from (and a NaN breaks the sort's ordering below, undefined behaviour). -inf is a
  // masked id.
  for (int i = 0; i < n; ++i)
    if (std::isnan(logits[static_cast<size_t>(i)]) || logits[static_cast<size_t>(i)] == INFINITY)
      throw NumericalError("the model's logit for id " + std::to_string(i) + " is " +
                           number_text(logits[static_cast<size_t>(i)]) +
                           ": the model's forward pass overflows fp32 (weights that are not "
                           "finite, or too large: a diverged run?)");
  if (o.temperature == 0.0) {
    int best = 0;
    for (int i = 1; i < n; ++i)
      if (logits[static_cast<size_t>(i)] > logits[static_cast<size_t>(best)]) best = i;
    return best;
  }
  // Ids by decreasing logit (ties: lower id first), cut to the top k.
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  const auto by_logit = [&](int32_t a, int32_t b) {
    const float la = logits[static_cast<size_t>(a)], lb = logits[static_cast<size_t>(b)];
    return la != lb ? la > lb : a < b;
  };
  const size_t keep =
      o.top_k > 0 ? std::min<size_t>(static_cast<size_t>(o.top_k), ids.size()) : ids.size();
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(keep), ids.end(),
                    by_logit);
  ids.resize(keep);
  // softmax(logits / temperature) over them, in double.
  const double top = logits[static_cast<size_t>(ids[0])];
  std::vector<double> p(keep);
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] =
        std::exp((static_cast<double>(logits[static_cast<size_t>(ids[i])]) - top) / o.temperature);
    sum += p[i];
  }
  // The nucleus: the most likely ids until their probability reaches top_p.
  size_t cut = keep;
  if (o.top_p < 1.0) {
    double acc = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      acc += p[i] / sum;
      if (acc >= o.top_p) {
        cut = i + 1;
        break;
      }
    }
  }
  double mass = 0.0;
  for (size_t i = 0; i < cut; ++i) mass += p[i];
  double target = u * mass, acc = 0.0;
  for (size_t i = 0; i < cut; ++i) {
    acc += p[i];
    if (target < acc) return ids[i];
  }
  // u * mass rounded up to the total: the last id that has a probability (not a masked one).
  size_t last = cut - 1;
  while (last > 0 && p[last] == 0.0) --last;
  return ids[last];
}

double GenerateResult::tokens_per_s(int64_t at) const {
  constexpr int64_t kSpan = 64;
  if (at < kSpan || at > static_cast<int64_t>(token_s.size()))
    return std::numeric_limits<double>::quiet_NaN();
  double s = 0.0;
  for (int64_t i = at - kSpan; i < at; ++i) s += token_s[static_cast<size_t>(i)];
  return s > 0.0 ? static_cast<double>(kSpan) / s : std::numeric_limits<double>::infinity();
}

GenerateResult generate(TokenDecoder& dec, std::span<const int32_t> prompt, const SampleOptions& o,
                        const PickableIds& pickable, const std::function<void(int32_t)>& on_token,
                        const std::function<void(int64_t, int64_t)>& on_prompt) {
  using Clock = std::chrono::steady_clock;
  const auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  SY_CHECK(!prompt.empty(), "generate: an empty prompt");
  const int limit = std::clamp(pickable.limit, 1, dec.vocab_size());
  // The ids never picked get a logit of -inf (pick_token's masked id), in a copy of the logits.
  std::vector<int32_t> never;
  for (int32_t id : pickable.never)
    if (id >= 0 && id < limit) never.push_back(id);
  std::sort(never.begin(), never.end());
  never.erase(std::unique(never.begin(), never.end()), never.end());
  SY_CHECK(static_cast<int>(never.size()) < limit,
           "generate: every one of the " + std::to_string(limit) + " ids is excluded");
  std::vector<float> masked;
  const auto pickable_logits = [&](const std::vector<float>& all) {
    const std::span<const float> first(all.data(), static_cast<size_t>(limit));
    if (never.empty()) return first;
    masked.assign(first.begin(), first.end());
    for (int32_t id : never) masked[static_cast<size_t>(id)] = -INFINITY;
    return std::span<const float>(masked);
  };
  GenerateResult r;
  dec.reset();
  auto t0 = Clock::now();
  const auto n = static_cast<int64_t>(prompt.size());
  const std::vector<float>* logits = &dec.feed(prompt.data(), static_cast<int>(n), [&](int fed) {
    if (on_prompt && n > dec.window()) on_prompt(fed, n);
  });
  auto t1 = Clock::now();
  r.prefill_s = seconds(t0, t1);
  for (int64_t i = 0; i < o.tokens; ++i) {
    t0 = Clock::now();
    const int32_t id = pick_token(pickable_logits(*logits), o, sample_uniform(o.seed, i));
    logits = &dec.feed(&id, 1);
    t1 = Clock::now();
    ++r.tokens;
    r.tokens_s += seconds(t0, t1);
    if (i < GenerateResult::kTimedTokens) r.token_s.push_back(seconds(t0, t1));
    if (on_token) on_token(id);
  }
  return r;
}

TextStream::TextStream(DecodeFn decode_fn, std::span<const int32_t> context)
    : decode_(std::move(decode_fn)), ids_(context.begin(), context.end()), read_(ids_.size()) {
  // A character the context leaves unfinished is held, as it would be when generated; and the
  // held ids start where the text splits (not inside a real U+FFFD, EF|BF BD, which reads as an
  // unfinished character).
  while (read_ > 0 && ids_.size() - read_ < kMaxHeld &&
         ends_incomplete(decode(read_ - std::min(read_, kContextIds), read_)))
    --read_;
  while (read_ > 0 && !splits_at(read_ - std::min(read_, kContextIds), read_, ids_.size())) --read_;
  prefix_ = read_ - std::min(read_, kContextIds);
  // The context's text a chunk at a time, each decoded with the kContextIds before it as a push
  // is: SentencePiece's decode of a whole long prompt at once took 40x its text in memory (QA: a
  // 2.5 MB prompt peaked at 367 MB). A chunk ends where the text so far is a prefix of the text
  // with the next ids too: no character there waits for a later byte. Asked of the text itself,
  // since a U+FFFD at the end may be a real one (EF BF BD) or a byte still to be completed
  // (review: guessing from the text, "\uFFFD\u27C2" came out as two U+FFFD).
  const auto stable = [&](size_t n) {
    const size_t from = n - std::min(n, kContextIds);
    return decode(from, std::min(ids_.size(), n + kMaxHeld + 1)).starts_with(decode(from, n));
  };
  constexpr size_t kChunk = 4096;
  for (size_t at = 0; at < read_;) {
    size_t next = std::min(read_, at + kChunk);
    while (next < read_ && next > at + 1 && !stable(next)) --next;
    if (next < read_ && !stable(next))  // none in the chunk (stray bytes throughout): past it
      for (next = std::min(read_, at + kChunk); next < read_ && !stable(next);) ++next;
    const size_t from = at - std::min(at, kContextIds);
    const std::string before = decode(from, at), upto = decode(from, next);
    context_text_ += upto.substr(std::min(before.size(), upto.size()));
    at = next;
  }
}

std::string TextStream::decode(size_t begin, size_t end) const {
  return decode_(std::span<const int32_t>(ids_).subspan(begin, end - begin));
}

bool TextStream::splits_at(size_t from, size_t b, size_t end) const {
  const std::string whole = decode(from, end), head = decode(from, b), tail = decode(b, end);
  // (A tail that starts with a piece's space: SentencePiece drops it from a text's first piece.)
  return whole == head + tail || whole == head + " " + tail;
}

std::string TextStream::emit(size_t end, const std::string& prefix_text, const std::string& text) {
  std::string out = text.size() > prefix_text.size() ? text.substr(prefix_text.size()) : "";
  prefix_ = read_;
  read_ = end;
  if (prefix_ >= kDropAt) {  // no decode reaches before the window again
    ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(prefix_));
    read_ -= prefix_;
    prefix_ = 0;
  }
  return out;
}

std::string TextStream::push(int32_t id) {
  ids_.push_back(id);
  const std::string prefix_text = decode(prefix_, read_);
  const std::string text = decode(prefix_, ids_.size());
  if (text.size() > prefix_text.size() && !ends_incomplete(text))
    return emit(ids_.size(), prefix_text, text);
  if (ids_.size() - read_ <= kMaxHeld) return "";
  // More held than one character can be: emit up to the last place, at least kMaxHeld ids back,
  // where the text splits -- not inside a character (a real U+FFFD, EF|BF BD, ends like an
  // unfinished one; cut there, its bytes read as two more U+FFFD: review). A character is at
  // most 4 ids, so one comes within a few ids.
  for (size_t cut = ids_.size() - kMaxHeld; cut > read_; --cut)
    if (splits_at(prefix_, cut, ids_.size())) return emit(cut, prefix_text, decode(prefix_, cut));
  return "";
}

std::string TextStream::flush() {
  if (read_ == ids_.size()) return "";
  return emit(ids_.size(), decode(prefix_, read_), decode(prefix_, ids_.size()));
}

}  // namespace sy
