#include "src/placement/coactivation_file.h"

#include <algorithm>
#include <filesystem>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"
#include "src/core/paths.h"

namespace sy {

namespace {

constexpr const char* kFormat = "switchyard-coactivation";
constexpr int64_t kVersion = 1;
// The names of Coactivation::checkpoints' attributes and datasets (<name>_step, _tokens, _counts).
constexpr std::array<const char*, 2> kSnapshotNames = {"checkpoint", "previous_checkpoint"};

template <class T>
void put_dataset(hid_t file, const char* name, hid_t file_type, hid_t mem_type,
                 std::vector<hsize_t> dims, const std::vector<T>& data) {
  h5::Dataspace space{
      H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr))};
  h5::Dataset ds{
      H5_CHECK(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
  if (!data.empty()) H5_CHECK(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()));
}

// The contents of dataset `name` into `out`, once its dims are `expect` (0: any size on that
// axis, `shape` says them in words) and it holds no more than the file does: a damaged dataspace
// (one flipped bit made an axis 1.5e9 long, which HDF5 1.10 opens) was allocated as read, and
// the command ended "fatal: out of memory" (exit 1; QA).
template <class T>
void get_dataset(hid_t file, const char* name, hid_t mem_type, const std::string& path,
                 const std::vector<hsize_t>& expect, const char* shape, std::vector<T>& out) {
  if (H5_CHECK(H5Lexists(file, name, H5P_DEFAULT)) <= 0)
    throw UsageError(path + ": missing dataset " + name);
  h5::Dataset ds{H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT))};
  h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
  std::vector<hsize_t> dims(static_cast<size_t>(H5_CHECK(H5Sget_simple_extent_ndims(space))));
  H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  bool fits = dims.size() == expect.size();
  for (size_t i = 0; fits && i < dims.size(); ++i) fits = expect[i] == 0 || dims[i] == expect[i];
  std::string dims_text;
  for (const hsize_t d : dims) dims_text += (dims_text.empty() ? "" : ", ") + std::to_string(d);
  if (!fits) throw UsageError(path + ": /" + name + " is [" + dims_text + "], not " + shape);
  // The writer stores every dataset whole, uncompressed: it cannot hold more than the file.
  const auto points = static_cast<hsize_t>(H5_CHECK(H5Sget_simple_extent_npoints(space)));
  std::error_code ec;
  const auto file_bytes = static_cast<hsize_t>(std::filesystem::file_size(path, ec));
  if (!ec && points > file_bytes / sizeof(T))
    throw UsageError(path + ": /" + name + " is [" + dims_text + "], more than the file's " +
                     std::to_string(file_bytes) + " bytes hold: a damaged file");
  out.resize(static_cast<size_t>(points));
  if (!out.empty()) H5_CHECK(H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
}

// The routing attributes <prefix>route_groups, <prefix>route_groups_topk and
// <prefix>other_routing_steps (the last where not 0); none where the routing is not known.
void write_routing(hid_t f, const std::string& prefix, const CoactivationRouting& r) {
  if (!r.known()) return;
  h5::write_attr(f, (prefix + "route_groups").c_str(), int64_t{r.groups});
  h5::write_attr(f, (prefix + "route_groups_topk").c_str(), int64_t{r.topk});
  if (r.other_steps > 0) h5::write_attr(f, (prefix + "other_routing_steps").c_str(), r.other_steps);
}

CoactivationRouting read_routing(hid_t f, const std::string& prefix, const std::string& path) {
  CoactivationRouting r;
  if (H5_CHECK(H5Aexists(f, (prefix + "route_groups").c_str())) <= 0) return r;
  const int64_t groups = h5::read_attr_i64(f, (prefix + "route_groups").c_str());
  const int64_t topk = h5::read_attr_i64(f, (prefix + "route_groups_topk").c_str());
  if (groups < 1 || topk < 1 || topk > groups || groups > (int64_t{1} << 20))
    throw UsageError(path + ": root attributes " + prefix + "route_groups " +
                     std::to_string(groups) + ", " + prefix + "route_groups_topk " +
                     std::to_string(topk) + " are no routing");
  r = CoactivationRouting::of(groups, topk);
  const std::string other = prefix + "other_routing_steps";
  if (H5_CHECK(H5Aexists(f, other.c_str())) > 0)
    r.other_steps = h5::read_attr_i64(f, other.c_str());
  return r;
}

}  // namespace

CoactivationRouting CoactivationRouting::of(int64_t route_groups, int64_t route_groups_topk) {
  if (route_groups <= 1 || route_groups_topk >= route_groups) return {1, 1};
  return {static_cast<int>(route_groups), static_cast<int>(route_groups_topk)};
}

std::string CoactivationRouting::describe() const {
  if (!known()) return "an unrecorded routing";
  if (groups == 1) return "plain top-k";
  return "the best " + std::to_string(topk) + " of " + std::to_string(groups) + " expert groups";
}

int64_t Coactivation::sample_tokens() const {
  const int64_t per_token = static_cast<int64_t>(num_layers) * top_k;
  return per_token > 0 ? static_cast<int64_t>(sample.size()) / per_token : 0;
}

Coactivation read_coactivation(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw UsageError(path + ": no co-activation file (the trainer writes <run dir>/" +
                     "coactivation.h5 at every log step)");
  h5::ErrorSilencer quiet;
  Coactivation c;
  try {
    if (const std::string why = unreadable_reason(path); !why.empty())
      throw UsageError(path + ": " + why);
    if (H5Fis_hdf5(path.c_str()) <= 0) throw UsageError(path + ": not an HDF5 file");
    h5::File f{H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
    if (H5_CHECK(H5Aexists(f, "format")) <= 0)
      throw UsageError(path + ": not a co-activation file (no format attribute)");
    if (const std::string format = h5::read_attr_string(f, "format"); format != kFormat)
      throw UsageError(path + ": format is '" + format + "', not '" + kFormat + "'");
    if (h5::read_attr_i64(f, "format_version") != kVersion)
      throw UsageError(path + ": format_version is not " + std::to_string(kVersion));
    c.num_layers = static_cast<int>(h5::read_attr_i64(f, "num_layers"));
    c.num_experts = static_cast<int>(h5::read_attr_i64(f, "num_experts"));
    c.top_k = static_cast<int>(h5::read_attr_i64(f, "top_k"));
    c.first_step = h5::read_attr_i64(f, "first_step");
    c.last_step = h5::read_attr_i64(f, "last_step");
    c.tokens = h5::read_attr_i64(f, "tokens");
    c.sample_step = h5::read_attr_i64(f, "sample_step");
    const auto NL = static_cast<hsize_t>(c.num_layers), E = static_cast<hsize_t>(c.num_experts),
               K = static_cast<hsize_t>(c.top_k);
    get_dataset(f, "counts", H5T_NATIVE_INT64, path, {NL, E, E},
                "[num_layers, num_experts, num_experts]", c.counts);
    get_dataset(f, "sample", H5T_NATIVE_INT32, path, {NL, 0, K}, "[num_layers, tokens, top_k]",
                c.sample);
    for (int32_t e : c.sample)
      if (e < 0 || e >= c.num_experts)
        throw UsageError(path + ": /sample holds expert " + std::to_string(e));
    for (auto [name, value] : {std::pair{"recounted_steps", &c.recounted_steps},
                               std::pair{"uncounted_steps", &c.uncounted_steps}})
      if (H5_CHECK(H5Aexists(f, name)) > 0) *value = h5::read_attr_i64(f, name);
    c.routing = read_routing(f, "", path);
    for (size_t i = 0; i < c.checkpoints.size(); ++i) {
      const std::string name = kSnapshotNames[i];
      CoactivationAt& at = c.checkpoints[i];
      if (H5_CHECK(H5Aexists(f, (name + "_step").c_str())) <= 0) continue;
      at.step = h5::read_attr_i64(f, (name + "_step").c_str());
      at.tokens = h5::read_attr_i64(f, (name + "_tokens").c_str());
      for (auto [tally, value] : {std::pair{"_recounted_steps", &at.recounted_steps},
                                  std::pair{"_uncounted_steps", &at.uncounted_steps}})
        if (H5_CHECK(H5Aexists(f, (name + tally).c_str())) > 0)
          *value = h5::read_attr_i64(f, (name + tally).c_str());
      at.routing = read_routing(f, name + "_", path);
      if (at.step == c.last_step)
        at.counts = c.counts;
      else
        get_dataset(f, (name + "_counts").c_str(), H5T_NATIVE_INT64, path, {NL, E, E},
                    "[num_layers, num_experts, num_experts]", at.counts);
    }
  } catch (const h5::AttrError& e) {
    throw UsageError(path + ": root " + std::string(e.what()));
  } catch (const h5::Error& e) {
    throw UsageError(path + ": cannot read: " + e.what());
  }
  return c;
}

void write_coactivation(const std::string& path, const Coactivation& c) {
  const std::string tmp = path + ".tmp";
  // A write HDF5 fails (a full run.out_dir) cannot be given up cleanly: check the room first,
  // so that a full disk is one message (the previous file kept), not pages of HDF5 errors.
  // A checkpoint's counts of the last step are /counts: no dataset of their own.
  auto own_counts = [&](const CoactivationAt& at) {
    return at.step >= 0 && at.step != c.last_step;
  };
  const auto copies = static_cast<size_t>(
      1 + std::count_if(c.checkpoints.begin(), c.checkpoints.end(), own_counts));
  const int64_t bytes = static_cast<int64_t>(copies * c.counts.size() * sizeof(int64_t) +
                                             c.sample.size() * sizeof(int32_t)) +
                        (int64_t{64} << 10);  // attributes and HDF5's metadata
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (const std::string why = files::no_room_for(parent.empty() ? "." : parent.string(), bytes);
      !why.empty())
    throw Error(kExitOther, "writing the co-activation counts '" + path + "': they need about " +
                                files::mib(bytes) + ", " + why + "; the previous file is kept");
  {
    h5::File f{H5_CHECK(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
    h5::write_attr(f, "format", std::string(kFormat));
    h5::write_attr(f, "format_version", kVersion);
    h5::write_attr(f, "num_layers", int64_t{c.num_layers});
    h5::write_attr(f, "num_experts", int64_t{c.num_experts});
    h5::write_attr(f, "top_k", int64_t{c.top_k});
    h5::write_attr(f, "first_step", c.first_step);
    h5::write_attr(f, "last_step", c.last_step);
    h5::write_attr(f, "tokens", c.tokens);
    h5::write_attr(f, "sample_step", c.sample_step);
    const auto NL = static_cast<hsize_t>(c.num_layers), E = static_cast<hsize_t>(c.num_experts),
               K = static_cast<hsize_t>(c.top_k);
    SY_CHECK(c.counts.size() == NL * E * E, "counts: " << c.counts.size() << " entries");
    put_dataset(f, "counts", H5T_STD_I64LE, H5T_NATIVE_INT64, {NL, E, E}, c.counts);
    put_dataset(f, "sample", H5T_STD_I32LE, H5T_NATIVE_INT32,
                {NL, static_cast<hsize_t>(c.sample_tokens()), K}, c.sample);
    if (c.recounted_steps > 0) h5::write_attr(f, "recounted_steps", c.recounted_steps);
    if (c.uncounted_steps > 0) h5::write_attr(f, "uncounted_steps", c.uncounted_steps);
    write_routing(f, "", c.routing);
    for (size_t i = 0; i < c.checkpoints.size(); ++i) {
      const std::string name = kSnapshotNames[i];
      const CoactivationAt& at = c.checkpoints[i];
      if (at.step < 0) continue;
      h5::write_attr(f, (name + "_step").c_str(), at.step);
      h5::write_attr(f, (name + "_tokens").c_str(), at.tokens);
      for (auto [tally, value] : {std::pair{"_recounted_steps", at.recounted_steps},
                                  std::pair{"_uncounted_steps", at.uncounted_steps}})
        if (value > 0) h5::write_attr(f, (name + tally).c_str(), value);
      write_routing(f, name + "_", at.routing);
      if (!own_counts(at)) continue;
      SY_CHECK(at.counts.size() == c.counts.size(),
               name << "_counts: " << at.counts.size() << " entries");
      put_dataset(f, (name + "_counts").c_str(), H5T_STD_I64LE, H5T_NATIVE_INT64, {NL, E, E},
                  at.counts);
    }
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL));
  }
  files::commit_file(tmp, path);
}

}  // namespace sy
