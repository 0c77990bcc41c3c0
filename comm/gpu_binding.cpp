// One GPU per rank (see gpu_binding.h).
#include "comm/gpu_binding.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace sy::comm {

int gpu_for_local_rank(int local_rank, int visible_devices) {
  if (visible_devices <= 0 || local_rank < 0) return -1;
  return local_rank % visible_devices;
}

std::string shared_gpu_error(const std::vector<std::string>& gpu_ids) {
  for (size_t a = 0; a < gpu_ids.size(); ++a) {
    if (gpu_ids[a].empty()) continue;
    for (size_t b = a + 1; b < gpu_ids.size(); ++b)
      if (gpu_ids[b] == gpu_ids[a])
        return "local ranks " + std::to_string(a) + " and " + std::to_string(b) +
               " of this node would share GPU " + gpu_ids[a] +
               " (a rank needs a GPU of its own: start at most as many ranks per node as it has "
               "GPUs, or bind one GPU per task, e.g. srun --gpus-per-task=1)";
  }
  return "";
}

GpuBinding bind_gpu_per_rank(const Comm& node, int visible_devices,
                             const std::function<std::string(int)>& gpu_id,
                             const std::string& no_gpu_reason) {
  GpuBinding out;
  out.device = gpu_for_local_rank(node.rank(), visible_devices);
  // Every rank takes part in the gather, whatever it found, so no rank waits alone. A rank
  // without a GPU sends an empty id and its reason.
  constexpr size_t kId = 96, kReason = 160;
  std::vector<char> mine(kId + kReason, '\0');
  if (out.device >= 0) {
    const std::string id = gpu_id(out.device);
    std::memcpy(mine.data(), id.data(), std::min(id.size(), kId - 1));
  } else {
    const std::string why = no_gpu_reason.empty() ? "no CUDA device visible" : no_gpu_reason;
    std::memcpy(mine.data() + kId, why.data(), std::min(why.size(), kReason - 1));
  }
  std::vector<char> all(mine.size() * static_cast<size_t>(node.size()));
  MPI_CHECK(MPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(),
                          static_cast<int>(mine.size()), MPI_CHAR, node.get()));
  std::vector<std::string> ids(static_cast<size_t>(node.size()));
  for (size_t r = 0; r < ids.size(); ++r) {
    const char* rec = all.data() + r * mine.size();
    ids[r] = std::string(rec, strnlen(rec, kId));
    if (ids[r].empty() && out.error.empty())
      out.error = "local rank " + std::to_string(r) + " of this node has no usable CUDA GPU: " +
                  std::string(rec + kId, strnlen(rec + kId, kReason));
  }
  if (out.error.empty()) out.error = shared_gpu_error(ids);
  if (!out.error.empty()) out.device = -1;
  return out;
}

}  // namespace sy::comm
