// src/core/h5_attr.h against files written here with HDF5's plain C calls, the way h5dump-style C
// writers store strings (fixed length, null- or space-padded, the full width used).
#include <gtest/gtest.h>

#include "common/temp_dir.h"
#include "src/core/h5_attr.h"

namespace {

using namespace sy;

void write_fixed(hid_t obj, const char* name, const std::string& text, H5T_str_t pad) {
  h5::Datatype t{H5_CHECK(H5Tcopy(H5T_C_S1))};
  H5_CHECK(H5Tset_size(t, text.size()));
  H5_CHECK(H5Tset_strpad(t, pad));
  h5::Dataspace scalar{H5_CHECK(H5Screate(H5S_SCALAR))};
  h5::Attribute a{H5_CHECK(H5Acreate2(obj, name, t, scalar, H5P_DEFAULT, H5P_DEFAULT))};
  H5_CHECK(H5Awrite(a, t, text.data()));
}

TEST(H5Attr, FixedLengthStringsAreReadWhole) {
  test::TempDir dir;
  h5::File f{
      H5_CHECK(H5Fcreate(dir.file("a.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
  write_fixed(f, "full", "byte", H5T_STR_NULLPAD);
  write_fixed(f, "spaced", "byte    ", H5T_STR_SPACEPAD);
  write_fixed(f, "short", std::string("ab\0\0", 4), H5T_STR_NULLPAD);
  EXPECT_EQ(h5::read_attr_string(f, "full"), "byte");
  EXPECT_EQ(h5::read_attr_string(f, "spaced"), "byte");
  EXPECT_EQ(h5::read_attr_string(f, "short"), "ab");
}

// Variable-length strings in either character set (older h5py and C writers store ASCII; HDF5
// converts neither to the other: reading ASCII as UTF-8 failed with "can't find datatype
// conversion path").
TEST(H5Attr, VariableLengthAsciiAndUtf8StringsAreRead) {
  test::TempDir dir;
  h5::File f{
      H5_CHECK(H5Fcreate(dir.file("a.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
  for (const auto& [name, cset] :
       {std::pair{"ascii", H5T_CSET_ASCII}, std::pair{"utf8", H5T_CSET_UTF8}}) {
    h5::Datatype t{H5_CHECK(H5Tcopy(H5T_C_S1))};
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
    H5_CHECK(H5Tset_cset(t, cset));
    h5::Dataspace scalar{H5_CHECK(H5Screate(H5S_SCALAR))};
    h5::Attribute a{H5_CHECK(H5Acreate2(f, name, t, scalar, H5P_DEFAULT, H5P_DEFAULT))};
    const char* text = "switchyard-checkpoint";
    H5_CHECK(H5Awrite(a, t, &text));
  }
  EXPECT_EQ(h5::read_attr_string(f, "ascii"), "switchyard-checkpoint");
  EXPECT_EQ(h5::read_attr_string(f, "utf8"), "switchyard-checkpoint");
}

TEST(H5Attr, ValuesRoundTripAndWrongClassesAreNamed) {
  test::TempDir dir;
  h5::File f{
      H5_CHECK(H5Fcreate(dir.file("a.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT))};
  h5::write_attr(f, "s", std::string("sentencepiece"));
  h5::write_attr(f, "i", int64_t{-7});
  h5::write_attr(f, "u", uint64_t{1} << 63);
  h5::write_attr(f, "d", 0.25);
  h5::write_attr(f, "i", int64_t{42});  // replaces
  EXPECT_EQ(h5::read_attr_string(f, "s"), "sentencepiece");
  EXPECT_EQ(h5::read_attr_i64(f, "i"), 42);
  EXPECT_EQ(h5::read_attr_u64(f, "u"), uint64_t{1} << 63);
  EXPECT_EQ(h5::read_attr_f64(f, "d"), 0.25);
  try {
    h5::read_attr_i64(f, "d");
    FAIL() << "a float read as an integer";
  } catch (const h5::AttrError& e) {
    EXPECT_STREQ(e.what(), "attribute 'd' must be an integer, it is float");
  }
  EXPECT_THROW(h5::read_attr_string(f, "absent"), h5::AttrError);
}

}  // namespace
