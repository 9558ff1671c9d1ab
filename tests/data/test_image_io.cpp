// Images and arrays on disk: PNG, image grids, EDM's sample-folder layout, .npy files and their errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/image_io.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/png_files.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::data;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_data_test") {}
};
using test::read_bytes;
using test::write_bytes;
using test::read_png;

}  // namespace

// ---- images ----------------------------------------------------------------------------------------

TEST_CASE("write_png round-trips exact pixels and leaves no temporary file") {
    TempDir tmp;
    const int h = 3, w = 5;
    for (int c : {1, 3, 4}) {
        std::vector<uint8_t> px(h * w * c);
        for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 37 + c);
        std::string path = tmp.file("img" + std::to_string(c) + ".png");
        write_png(path, px.data(), h, w, c);
        int rw, rh, rc;
        std::vector<uint8_t> back = read_png(path, rw, rh, rc);
        CHECK(rw == w);
        CHECK(rh == h);
        CHECK(rc == c);
        CHECK(back == px);
    }
    CHECK(tmp.entries().size() == 3);
    uint8_t one = 7;
    CHECK(has(error_of([&] { write_png(tmp.file("no/such/dir.png"), &one, 1, 1, 1); }), "no/such/dir.png"));
}

TEST_CASE("to_uint8_hwc maps [-1, 1] the EDM way and transposes CHW to HWC") {
    // x * 127.5 + 128, clipped, truncated.
    std::vector<double> vals = {-1.0, 1.0, 0.0, 0.5, -2.0, 2.0, NAN, -0.999, 0.9999, 0.25, -0.5, 0.1};
    Tensor t = ops::from_vector(vals, {3, 2, 2});
    std::vector<uint8_t> u = to_uint8_hwc(t);
    REQUIRE(u.size() == 12);
    auto expect = [](double x) -> int {
        float s = static_cast<float>(x) * 127.5f;
        s = s + 128.0f;
        if (!(s >= 0)) return 0;
        return s >= 255 ? 255 : static_cast<int>(s);
    };
    for (int c = 0; c < 3; ++c)
        for (int p = 0; p < 4; ++p) CHECK(int(u[p * 3 + c]) == expect(vals[c * 4 + p]));
    CHECK(u[0] == 0);          // -1 -> 0.5 -> 0
    CHECK(u[1 * 3 + 0] == 255);  // 1 -> 255.5 -> 255
    CHECK(u[2 * 3 + 0] == 128);  // 0 -> 128
    CHECK(u[3 * 3 + 0] == 191);  // 0.5 -> 191.75
    CHECK(u[2 * 3 + 1] == 0);    // NaN -> 0
    // float64 input gives the same bytes.
    CHECK(to_uint8_hwc(ops::to(t, DType::F64)) == u);
}

TEST_CASE("write_image_grid tiles images row by row") {
    TempDir tmp;
    const int n = 5, h = 2, w = 3;
    std::vector<double> vals;
    for (int i = 0; i < n; ++i)
        for (int p = 0; p < h * w; ++p) vals.push_back(-1.0 + 0.25 * i);  // image i is uniform
    Tensor imgs = ops::from_vector(vals, {n, 1, h, w});
    auto cell_value = [](int i) { return static_cast<int>((-1.0f + 0.25f * i) * 127.5f + 128.0f); };

    write_image_grid(tmp.file("grid.png"), imgs);  // ceil(sqrt(5)) = 3 columns, 2 rows
    int gw, gh, gc;
    std::vector<uint8_t> g = read_png(tmp.file("grid.png"), gw, gh, gc);
    REQUIRE(gw == 3 * w);
    REQUIRE(gh == 2 * h);
    CHECK(gc == 1);
    for (int y = 0; y < gh; ++y)
        for (int x = 0; x < gw; ++x) {
            int i = (y / h) * 3 + x / w;
            CHECK(int(g[y * gw + x]) == (i < n ? cell_value(i) : 0));
        }

    write_image_grid(tmp.file("grid2.png"), imgs, 2);  // 2 columns, 3 rows
    g = read_png(tmp.file("grid2.png"), gw, gh, gc);
    CHECK(gw == 2 * w);
    CHECK(gh == 3 * h);
    CHECK(int(g[(2 * h) * gw + 0]) == cell_value(4));
    CHECK(int(g[(2 * h) * gw + w]) == 0);

    Tensor rgb = ops::zeros({2, 3, 4, 4});
    write_image_grid(tmp.file("rgb.png"), rgb);
    read_png(tmp.file("rgb.png"), gw, gh, gc);
    CHECK(gc == 3);
    CHECK(gw == 8);
    CHECK(gh == 4);
}

TEST_CASE("write_images_to_dir lays samples out like EDM's generate.py --subdirs") {
    TempDir tmp;
    Tensor imgs = ops::from_vector({-1, 0, 0.5, 1}, {4, 1, 1, 1});
    std::vector<int64_t> seeds = {5, 999, 1000, 123456};
    write_images_to_dir(tmp.path.string(), imgs, seeds);
    for (const char* rel : {"000000/000005.png", "000000/000999.png", "001000/001000.png", "123000/123456.png"})
        CHECK_MESSAGE(fs::is_regular_file(tmp.path / rel), rel);
    int w, h, c;
    std::vector<uint8_t> px = read_png(tmp.file("123000/123456.png"), w, h, c);
    CHECK(px == std::vector<uint8_t>{255});
    px = read_png(tmp.file("001000/001000.png"), w, h, c);
    CHECK(px == std::vector<uint8_t>{191});

    write_images_to_dir(tmp.file("flat"), imgs, seeds, /*subdirs=*/false);
    CHECK(fs::is_regular_file(tmp.path / "flat" / "123456.png"));
    CHECK(has(error_of([&] { write_images_to_dir(tmp.path.string(), imgs, {1, 2}); }), "2 seeds for 4 images"));
}

// ---- npy -------------------------------------------------------------------------------------------

TEST_CASE("npy: bit-exact round trips and the header the spec asks for") {
    TempDir tmp;
    uint32_t nan_bits = 0x7fc00123u;
    float odd_nan;
    std::memcpy(&odd_nan, &nan_bits, 4);
    Tensor f = Tensor::empty({2, 3}, DType::F32);
    float vals[6] = {1.5f, -0.0f, INFINITY, odd_nan, 1e-45f, -3.25e10f};
    std::memcpy(f.raw_data(), vals, sizeof vals);
    write_npy(tmp.file("f.npy"), f);

    std::string bytes = read_bytes(tmp.file("f.npy"));
    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    // 10 bytes of magic, version and length, the 60-byte dict, then spaces and '\n' up to 128 (a multiple of 64).
    const size_t data_at = 128;
    REQUIRE(bytes.size() == data_at + 24);
    CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
    CHECK(static_cast<uint8_t>(bytes[8]) + 256 * static_cast<uint8_t>(bytes[9]) == data_at - 10);
    CHECK(bytes.substr(10, dict.size()) == dict);
    CHECK(bytes.substr(10 + dict.size(), data_at - 10 - dict.size() - 1) ==
          std::string(data_at - 10 - dict.size() - 1, ' '));
    CHECK(bytes[data_at - 1] == '\n');
    CHECK(std::memcmp(bytes.data() + data_at, vals, sizeof vals) == 0);

    Tensor back = read_npy(tmp.file("f.npy"));
    CHECK(back.dtype() == DType::F32);
    CHECK(back.shape() == Shape{2, 3});
    CHECK(std::memcmp(back.raw_data(), vals, sizeof vals) == 0);

    // float64, 1-D (a trailing comma in the shape), 0-D, empty and a wider shape.
    Tensor d = ops::from_vector({0.1, -2.0, 1e300, 5e-324, 3.0}, {5}, DType::F64);
    write_npy(tmp.file("d.npy"), d);
    bytes = read_bytes(tmp.file("d.npy"));
    CHECK(has(bytes.substr(0, 128), "{'descr': '<f8', 'fortran_order': False, 'shape': (5,), }"));
    CHECK(bytes.size() == 128 + 40);
    Tensor db = read_npy(tmp.file("d.npy"));
    CHECK(db.dtype() == DType::F64);
    CHECK(db.shape() == Shape{5});
    CHECK(std::memcmp(db.raw_data(), d.raw_data(), 40) == 0);

    Tensor s = ops::from_vector({42.0}, {});
    write_npy(tmp.file("s.npy"), s);
    CHECK(has(read_bytes(tmp.file("s.npy")), "'shape': (), }"));
    CHECK(read_npy(tmp.file("s.npy")).shape() == Shape{});
    CHECK(read_npy(tmp.file("s.npy")).item() == 42.0);

    Tensor e = Tensor::empty({0, 4}, DType::F32);
    write_npy(tmp.file("e.npy"), e);
    CHECK(read_npy(tmp.file("e.npy")).shape() == Shape{0, 4});

    Tensor big = ops::arange(2 * 3 * 4 * 5 * 6 * 7);
    big = ops::reshape(big, {2, 3, 4, 5, 6, 7});
    write_npy(tmp.file("big.npy"), ops::transpose(big, 0, 5));  // non-contiguous input is written C-ordered
    Tensor bb = read_npy(tmp.file("big.npy"));
    CHECK(bb.shape() == Shape{7, 3, 4, 5, 6, 2});
    CHECK(bb.to_vector() == ops::contiguous(ops::transpose(big, 0, 5)).to_vector());
    CHECK(read_bytes(tmp.file("big.npy")).size() % 4 == 0);
    for (const auto& name : tmp.entries()) CHECK_MESSAGE(!has(name, ".tmp"), name);
}

TEST_CASE("read_npy accepts what numpy writes and rejects the rest clearly") {
    TempDir tmp;
    auto npy = [](const std::string& dict, const std::string& data, int major = 1) {
        std::string h = dict;
        size_t prefix = major == 1 ? 10 : 12;
        while ((prefix + h.size() + 1) % 64) h.push_back(' ');
        h.push_back('\n');
        std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
        uint32_t n = static_cast<uint32_t>(h.size());
        for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
        return out + h + data;
    };
    std::string two_floats(8, '\0');
    float fv[2] = {1.0f, -2.0f};
    std::memcpy(two_floats.data(), fv, 8);

    // numpy >= 1.23 leaves spare spaces after the dict; version 2.0 has a 4-byte header length.
    write_bytes(tmp.file("np.npy"), npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }                    ",
                                        two_floats));
    CHECK(read_npy(tmp.file("np.npy")).to_vector() == std::vector<double>{1.0, -2.0});
    write_bytes(tmp.file("v2.npy"), npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", two_floats, 2));
    CHECK(read_npy(tmp.file("v2.npy")).shape() == Shape{1, 2});

    auto err = [&](const std::string& name, const std::string& contents) {
        write_bytes(tmp.file(name), contents);
        std::string e = error_of([&] { read_npy(tmp.file(name)); });
        CHECK_MESSAGE(has(e, name), e);
        return e;
    };
    CHECK(has(err("magic.npy", "PK\x03\x04 this is a zip"), "bad magic"));
    CHECK(has(err("big_endian.npy", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", two_floats)),
              "'>f4'"));
    CHECK(has(err("int.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", two_floats)), "'<i4'"));
    CHECK(has(err("fortran.npy", npy("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", two_floats)),
              "Fortran"));
    CHECK(has(err("short.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", two_floats)),
              "truncated"));
    std::string good = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", two_floats);
    CHECK(has(err("cut_header.npy", good.substr(0, 30)), "truncated"));
    CHECK(has(err("long.npy", good + "x"), "size mismatch"));
    CHECK(has(err("shape.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (a, 2), }", two_floats)),
              "shape"));
    CHECK(has(error_of([&] { read_npy(tmp.file("absent.npy")); }), "does not exist"));
    // Products past int64 (each dim has at most 15 digits) and a zero dim beside huge ones.
    CHECK(has(err("wrap.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 999999999999999), }", "")),
              "absurd shape"));
    CHECK(has(err("zero.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 999999999999999, 999999999999999, 999999999999999), }", "")),
              "absurd shape"));
}
