// Grow-only buffers of the model's layers: once a buffer has held the largest micro-batch, later
// calls never allocate (no allocation per step).
#pragma once

#include <cstddef>

namespace sy {

template <class V>
void grow(V& v, long n) {
  if (static_cast<long>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

}  // namespace sy
