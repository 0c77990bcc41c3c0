#include "src/ckpt/seal.h"

#include <array>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "src/ckpt/detail.h"

namespace sy::ckpt::detail {

namespace {

// A dataset without Fletcher32 larger than this is listed by type and shape only (no such
// dataset is written today; the bound keeps a seal from reading gigabytes).
constexpr int64_t kMaxUnfilteredBytes = int64_t{256} << 20;

constexpr std::array<uint64_t, 256> make_crc64_table() {
  // CRC-64/XZ: ECMA-182 polynomial, reflected.
  constexpr uint64_t kPoly = 0xC96C5795D7870F42ull;
  std::array<uint64_t, 256> t{};
  for (uint64_t i = 0; i < 256; ++i) {
    uint64_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint64_t, 256> kCrc64Table = make_crc64_table();

// The canonical listing is hashed as it is produced: each field length-prefixed, so no two
// different listings give the same byte stream.
class Hasher {
 public:
  void field(std::string_view bytes) {
    const uint64_t n = bytes.size();
    crc_ = crc64(crc_, std::string_view(reinterpret_cast<const char*>(&n), sizeof n));
    crc_ = crc64(crc_, bytes);
  }
  void number(int64_t v) { field(std::string_view(reinterpret_cast<const char*>(&v), sizeof v)); }
  uint64_t value() const { return crc_; }

 private:
  uint64_t crc_ = 0;
};

h5::Datatype vlen_string_type() {
  h5::Datatype t{H5_CHECK(H5Tcopy(H5T_C_S1))};
  H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
  H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

// How a value of `type` is hashed.
enum class Form { kVlenString, kFixed, kOpaqueVlen };

Form describe_type(hid_t type, Hasher& h) {
  const H5T_class_t cls = H5_CHECK(H5Tget_class(type));
  h.number(cls);
  if (cls == H5T_STRING && H5_CHECK(H5Tis_variable_str(type)) > 0) {
    h.field("vlen-string");
    return Form::kVlenString;
  }
  h.number(static_cast<int64_t>(H5Tget_size(type)));
  if (cls == H5T_INTEGER) h.number(H5_CHECK(H5Tget_sign(type)));
  if (H5_CHECK(H5Tdetect_class(type, H5T_VLEN)) > 0) return Form::kOpaqueVlen;
  return Form::kFixed;
}

void describe_space(hid_t space, Hasher& h) {
  const int nd = H5_CHECK(H5Sget_simple_extent_ndims(space));
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  if (nd > 0) H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
  h.number(nd);
  for (hsize_t d : dims) h.number(static_cast<int64_t>(d));
}

// Reads every element of an attribute (is_attr) or dataset `obj` of `type` and hashes the values.
void hash_values(hid_t obj, bool is_attr, hid_t type, hid_t space, Form form, Hasher& h) {
  const hssize_t points = H5_CHECK(H5Sget_simple_extent_npoints(space));
  if (form == Form::kOpaqueVlen) {
    h.field("vlen values not covered");
    return;
  }
  if (form == Form::kVlenString) {
    const h5::Datatype mem = vlen_string_type();
    std::vector<char*> text(static_cast<size_t>(points), nullptr);
    if (points > 0) {
      H5_CHECK(is_attr ? H5Aread(obj, mem, text.data())
                       : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()));
    }
    for (const char* t : text) h.field(t ? std::string_view(t) : std::string_view("\0null", 5));
    if (points > 0) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, text.data());
    return;
  }
  // Fixed-size values in the machine's form (the files are little-endian and so are we).
  h5::Datatype mem{H5_CHECK(H5Tget_native_type(type, H5T_DIR_ASCEND))};
  const size_t bytes = H5Tget_size(mem) * static_cast<size_t>(points);
  std::string buf(bytes, '\0');
  if (bytes > 0) {
    H5_CHECK(is_attr ? H5Aread(obj, mem, buf.data())
                     : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
  }
  h.field(buf);
}

void hash_attributes(hid_t obj, bool is_root, Hasher& h) {
  H5O_info_t info{};
  H5_CHECK(H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS));
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    h5::Attribute a{H5_CHECK(
        H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT))};
    const ssize_t len = H5_CHECK(H5Aget_name(a, 0, nullptr));
    std::string name(static_cast<size_t>(len), '\0');
    H5_CHECK(H5Aget_name(a, static_cast<size_t>(len) + 1, name.data()));
    if (is_root && name == kChecksumAttr) continue;
    h.field("attribute");
    h.field(name);
    h5::Datatype type{H5_CHECK(H5Aget_type(a))};
    h5::Dataspace space{H5_CHECK(H5Aget_space(a))};
    const Form form = describe_type(type, h);
    describe_space(space, h);
    hash_values(a, true, type, space, form, h);
  }
}

bool has_fletcher32(hid_t dataset) {
  h5::PropList dcpl{H5_CHECK(H5Dget_create_plist(dataset))};
  const int n = H5_CHECK(H5Pget_nfilters(dcpl));
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelem = 0;
    if (H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelem, nullptr, 0, nullptr,
                       &config) == H5Z_FILTER_FLETCHER32)
      return true;
  }
  return false;
}

void hash_dataset(hid_t ds, Hasher& h) {
  h5::Datatype type{H5_CHECK(H5Dget_type(ds))};
  h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
  const Form form = describe_type(type, h);
  describe_space(space, h);
  if (has_fletcher32(ds)) return;  // its chunks carry their own checksums
  const hssize_t points = H5_CHECK(H5Sget_simple_extent_npoints(space));
  if (static_cast<int64_t>(H5Tget_size(type)) * points > kMaxUnfilteredBytes) {
    h.field("contents too large to cover");
    return;
  }
  hash_values(ds, false, type, space, form, h);
}

}  // namespace

uint64_t crc64(uint64_t crc, std::string_view bytes) {
  crc = ~crc;
  for (unsigned char b : bytes) crc = kCrc64Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::string metadata_checksum(hid_t file) {
  Hasher h;
  for (const H5Object& o : list_objects(file)) {
    h.field("object");
    h.field(o.path);
    h.number(o.type);
    h5::Handle<H5Oclose> obj{H5_CHECK(H5Oopen(file, o.path.c_str(), H5P_DEFAULT))};
    if (o.type == H5O_TYPE_DATASET) hash_dataset(obj, h);
    hash_attributes(obj, o.path == ".", h);
  }
  char text[32];
  std::snprintf(text, sizeof text, "crc64:%016llx", static_cast<unsigned long long>(h.value()));
  return text;
}

void seal_checkpoint(const std::string& path) {
  h5::PropList fapl = serial_fapl();
  H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110));
  const hid_t id = H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl));
  try {
    write_attr(id, kChecksumAttr, metadata_checksum(id));
  } catch (...) {
    H5Fclose(id);
    throw;
  }
  H5_CHECK(H5Fclose(id));  // checked: the attribute reaches the file here
}

std::string check_seal(hid_t file) {
  if (!has_attr(file, kChecksumAttr))
    return std::string("no metadata checksum (root attribute '") + kChecksumAttr +
           "'): written before switchyard sealed its checkpoints, or the attribute was removed; "
           "its attributes cannot be verified";
  const std::string stored = read_attr_string(file, kChecksumAttr);
  const std::string computed = metadata_checksum(file);
  if (stored == computed) return "";
  return "metadata checksum mismatch (stored " + stored + ", computed " + computed +
         "): an attribute, the manifest or the file's structure changed after it was written";
}

}  // namespace sy::ckpt::detail
