// Layout-independent initialisation (SPEC section 2): the initial value of every element of a
// global parameter depends only on (run.seed, the parameter's name, the element's flat row-major
// index in the global tensor). A rank that owns a shard calls init_param_range on its slice and
// gets exactly the values a 1-rank run has there; the CUDA backend mirrors the same transform
// (kernels/cpu/philox.h is device-usable) and must reproduce it bit for bit.
//
// The scheme, for a kMatrix parameter with name N (SPEC 5 path without the leading '/', e.g.
// "model/layers/0/attn/wqkv"), standard deviation init_std, and element index i:
//   stream  = FNV-1a 64 of the bytes of N                       (philox::fnv1a64)
//   block   = i / 4,  lane = i % 4
//   w[0..3] = Philox4x32-10(counter = {block lo32, block hi32, stream lo32, stream hi32},
//                           key     = {seed lo32, seed hi32})
//   u(x)    = (x + 0.5) * 2^-32                                  in (0, 1), exact in double
//   z[0] = r0 cos(phi0), z[1] = r0 sin(phi0),  r0 = sqrt(-2 ln u(w[0])), phi0 = 2 pi u(w[1])
//   z[2] = r1 cos(phi1), z[3] = r1 sin(phi1),  r1 = sqrt(-2 ln u(w[2])), phi1 = 2 pi u(w[3])
//   value   = (T)(init_std * z[lane])          product in double, one rounding to T at the end
// ln, sin and cos are philox::log_u01 / sincos_2pi_u01 (plain IEEE double arithmetic, no libm,
// no FMA) so both backends produce the same double and therefore the same float. init_std comes
// from the ParamTable (0.02, or 0.02 / sqrt(2 L) for wo and w2). kGain elements are 1, kBias 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "src/model/params.h"

namespace sy {

// The Philox stream id of a parameter: FNV-1a 64 of its name.
uint64_t param_stream_id(const std::string& name);

// dst[0..count) (=) GLOBAL elements first .. first+count-1 of `spec` (flat row-major indices
// into its global shape, whatever part of it this rank holds).
// Throws (SY_CHECK) when the range leaves the parameter.
template <class T>
void init_param_range(T* dst, const ParamSpec& spec, uint64_t seed, size_t first, size_t count);

// One run of an initialisation: `count` elements that are contiguous both in the global tensor
// of `spec` (from GLOBAL flat index `global`) and in the rank's flat local buffer (from `local`,
// the offset of the parameter's slab included).
struct InitRun {
  const ParamSpec* spec = nullptr;
  size_t global = 0, local = 0, count = 0;
};

// Every run the initialisation of `table` draws, parameter by parameter in table order and in
// local order inside each (its slab's row-major runs, Slab::for_each_run): a whole parameter is
// one run from global index 0; a shard is drawn at its global offsets (SPEC section 2). The one
// enumeration both backends execute -- init_params below and CudaModel::init_params -- so the
// GPU's shards get the CPU's values. Points into `table`.
std::vector<InitRun> init_runs(const ParamTable& table);

// params[table.total_numel()] (=) the local part (slab) of every parameter of `table` at its
// offset (init_runs), zeros in the padding.
template <class T>
void init_params(T* params, const ParamTable& table, uint64_t seed);

}  // namespace sy
