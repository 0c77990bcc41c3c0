#include "src/model/init.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/philox.h"
#include "src/core/error.h"

namespace sy {

uint64_t param_stream_id(const std::string& name) {
  return philox::fnv1a64(name.data(), name.size());
}

template <class T>
void init_param_range(T* dst, const ParamSpec& spec, uint64_t seed, size_t first, size_t count) {
  const size_t total = spec.global_numel();
  SY_CHECK(first <= total && count <= total - first, "range [" << first << ", " << first + count
                                                               << ") outside '" << spec.name
                                                               << "' of " << total << " elements");
  if (count == 0) return;
  switch (spec.kind) {
    case ParamKind::kGain:
      for (size_t i = 0; i < count; ++i) dst[i] = T(1);
      return;
    case ParamKind::kBias:
      for (size_t i = 0; i < count; ++i) dst[i] = T(0);
      return;
    case ParamKind::kMatrix:
      break;
  }
  const uint64_t stream = param_stream_id(spec.name);
  const double init_std = spec.init_std;
  const size_t end = first + count;
  // One Philox block feeds four consecutive elements; a range may start or end mid-block, which
  // is why each block writes only the lanes inside [first, end).
  const auto block_begin = static_cast<int64_t>(first / 4);
  const auto block_end = static_cast<int64_t>((end + 3) / 4);
#pragma omp parallel for schedule(static)
  for (int64_t b = block_begin; b < block_end; ++b) {
    double z[4];
    philox::normal4(seed, stream, static_cast<uint64_t>(b), z);
    for (size_t lane = 0; lane < 4; ++lane) {
      const size_t idx = static_cast<size_t>(b) * 4 + lane;
      if (idx >= first && idx < end) dst[idx - first] = static_cast<T>(init_std * z[lane]);
    }
  }
}

std::vector<InitRun> init_runs(const ParamTable& table) {
  std::vector<InitRun> runs;
  for (const ParamSpec& spec : table.specs())
    spec.for_each_run([&](int64_t global, int64_t local_idx, int64_t n) {
      runs.push_back({&spec, static_cast<size_t>(global),
                      spec.offset + static_cast<size_t>(local_idx), static_cast<size_t>(n)});
    });
  return runs;
}

template <class T>
void init_params(T* params, const ParamTable& table, uint64_t seed) {
  std::fill(params, params + table.total_numel(), T(0));  // padding included
  for (const InitRun& r : init_runs(table))
    init_param_range(params + r.local, *r.spec, seed, r.global, r.count);
}

template void init_param_range<float>(float*, const ParamSpec&, uint64_t, size_t, size_t);
template void init_param_range<double>(double*, const ParamSpec&, uint64_t, size_t, size_t);
template void init_params<float>(float*, const ParamTable&, uint64_t);
template void init_params<double>(double*, const ParamTable&, uint64_t);

}  // namespace sy
