// Application I/O: dataset loading (CIFAR-10 binary, IDX gzipped or not, padding, errors), batches and
// the resumable sampler; PNG, image grids, EDM's sample-folder layout, .npy files; line plots; progress.
#include <doctest/doctest.h>

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "tests/temp_files.h"
#include "apps/common/dataset.h"
#include "apps/common/image_io.h"
#include "apps/common/plot.h"
#include "apps/common/progress.h"
#include "tensor/ops.h"

#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

using namespace stf;
using namespace stf::apps;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_apps_test") {}
};
using test::read_bytes;
using test::write_bytes;


void write_gz(const std::string& path, const std::string& bytes) {
    gzFile f = gzopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

std::string be32(uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
    return s;
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const stf::Error& e) {
        return e.what();
    }
    return "<no error>";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---- synthetic data ----

uint8_t cifar_pixel(int file, int rec, int c, int y, int x) { return static_cast<uint8_t>(file * 31 + rec * 7 + c * 50 + y * 3 + x); }
int cifar_label(int file, int rec) { return (file * 3 + rec) % 10; }

// data_batch_1..5.bin with `records` records each.
void write_cifar(const fs::path& dir, int records = 3) {
    fs::create_directories(dir);
    for (int f = 1; f <= 5; ++f) {
        std::string bytes;
        for (int r = 0; r < records; ++r) {
            bytes.push_back(static_cast<char>(cifar_label(f, r)));
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < 32; ++y)
                    for (int x = 0; x < 32; ++x) bytes.push_back(static_cast<char>(cifar_pixel(f, r, c, y, x)));
        }
        write_bytes((dir / ("data_batch_" + std::to_string(f) + ".bin")).string(), bytes);
    }
}

uint8_t idx_pixel(int n, int y, int x) { return static_cast<uint8_t>(n * 13 + y * 28 + x + 1); }

std::string idx_images(int n, int h = 28, int w = 28, uint32_t magic = 0x00000803) {
    std::string s = be32(magic) + be32(n) + be32(h) + be32(w);
    for (int i = 0; i < n; ++i)
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) s.push_back(static_cast<char>(idx_pixel(i, y, x)));
    return s;
}

std::string idx_labels(int n) {
    std::string s = be32(0x00000801) + be32(n);
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((i * 3) % 10));
    return s;
}

std::vector<uint8_t> read_png(const std::string& path, int& w, int& h, int& c) {
    unsigned char* p = stbi_load(path.c_str(), &w, &h, &c, 0);
    REQUIRE_MESSAGE(p != nullptr, "stbi_load failed for " << path);
    std::vector<uint8_t> out(p, p + static_cast<size_t>(w) * h * c);
    stbi_image_free(p);
    return out;
}

}  // namespace

// ---- dataset ---------------------------------------------------------------------------------------

TEST_CASE("CIFAR-10 binary batches: labels and CHW pixels land where they belong") {
    TempDir tmp;
    write_cifar(tmp.path / "cifar-10-batches-bin");
    for (const std::string& where : {tmp.path.string(), tmp.file("cifar-10-batches-bin")}) {
        ImageDataset d = ImageDataset::load(where);
        REQUIRE(d.size() == 15);
        CHECK(d.channels() == 3);
        CHECK(d.height() == 32);
        CHECK(d.width() == 32);
        CHECK(d.has_labels());
        CHECK(d.num_classes() <= 10);
        for (int f = 1; f <= 5; ++f)
            for (int r = 0; r < 3; ++r) {
                int64_t i = (f - 1) * 3 + r;
                CHECK(d.label(i) == cifar_label(f, r));
                const uint8_t* img = d.image(i);
                for (int c = 0; c < 3; ++c)
                    for (int y : {0, 5, 31})
                        for (int x : {0, 17, 31}) CHECK(img[(c * 32 + y) * 32 + x] == cifar_pixel(f, r, c, y, x));
            }
    }
    // One batch file on its own.
    ImageDataset one = ImageDataset::load(tmp.file("cifar-10-batches-bin/data_batch_2.bin"));
    CHECK(one.size() == 3);
    CHECK(one.label(1) == cifar_label(2, 1));
    CHECK(one.image(1)[1024 + 32 + 1] == cifar_pixel(2, 1, 1, 1, 1));
}

TEST_CASE("CIFAR-10 errors name the file") {
    TempDir tmp;
    write_cifar(tmp.path);
    SUBCASE("truncated batch") {
        std::string bytes = read_bytes(tmp.file("data_batch_4.bin"));
        write_bytes(tmp.file("data_batch_4.bin"), bytes.substr(0, bytes.size() - 100));
        std::string e = error_of([&] { ImageDataset::load(tmp.path.string()); });
        CHECK(has(e, "data_batch_4.bin"));
        CHECK(has(e, "size mismatch"));
        CHECK(has(e, "3073"));
    }
    SUBCASE("missing batch") {
        fs::remove(tmp.path / "data_batch_3.bin");
        std::string e = error_of([&] { ImageDataset::load(tmp.path.string()); });
        CHECK(has(e, "missing data_batch_3.bin"));
    }
    SUBCASE("label out of range") {
        std::string bytes = read_bytes(tmp.file("data_batch_5.bin"));
        bytes[3073] = 12;
        write_bytes(tmp.file("data_batch_5.bin"), bytes);
        std::string e = error_of([&] { ImageDataset::load(tmp.path.string()); });
        CHECK(has(e, "data_batch_5.bin"));
        CHECK(has(e, "label 12"));
    }
}

TEST_CASE("IDX images, gzipped and plain, with labels beside them, padded to 32") {
    TempDir tmp;
    write_bytes(tmp.file("train-images-idx3-ubyte"), idx_images(4));
    write_bytes(tmp.file("train-labels-idx1-ubyte"), idx_labels(4));
    fs::create_directories(tmp.path / "gz");
    write_gz(tmp.file("gz/train-images-idx3-ubyte.gz"), idx_images(4));
    write_gz(tmp.file("gz/train-labels-idx1-ubyte.gz"), idx_labels(4));
    write_gz(tmp.file("gz/t10k-images-idx3-ubyte.gz"), idx_images(2));  // the directory must pick train

    for (const std::string& path : {tmp.file("train-images-idx3-ubyte"), tmp.path.string(),
                                    tmp.file("gz/train-images-idx3-ubyte.gz"), tmp.file("gz")}) {
        CAPTURE(path);
        ImageDataset d = ImageDataset::load(path);  // pad_to defaults to 32
        REQUIRE(d.size() == 4);
        CHECK(d.channels() == 1);
        CHECK(d.height() == 32);
        CHECK(d.width() == 32);
        REQUIRE(d.has_labels());
        for (int i = 0; i < 4; ++i) {
            CHECK(d.label(i) == (i * 3) % 10);
            const uint8_t* img = d.image(i);
            for (int y = 0; y < 32; ++y)
                for (int x = 0; x < 32; ++x) {
                    bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
                    uint8_t want = inside ? idx_pixel(i, y - 2, x - 2) : 0;
                    if (img[y * 32 + x] != want) {
                        FAIL_CHECK("pixel (" << y << ", " << x << ") of image " << i);
                        y = 32;
                        break;
                    }
                }
        }
    }
    ImageDataset raw = ImageDataset::load(tmp.file("gz/train-images-idx3-ubyte.gz"), /*pad_to=*/0);
    CHECK(raw.height() == 28);
    CHECK(raw.width() == 28);
    CHECK(raw.image(3)[5 * 28 + 7] == idx_pixel(3, 5, 7));
    ImageDataset test = ImageDataset::load(tmp.file("gz/t10k-images-idx3-ubyte.gz"));
    CHECK(test.size() == 2);
    CHECK_FALSE(test.has_labels());  // no t10k labels file beside it
    CHECK(test.label(1) == 0);
    CHECK(test.num_classes() == 0);
}

TEST_CASE("dataset errors: missing path, empty directory, truncation, bad magic, mismatched labels") {
    TempDir tmp;
    std::string e = error_of([&] { ImageDataset::load(tmp.file("nope")); });
    CHECK(has(e, "nope"));
    CHECK(has(e, "does not exist"));

    e = error_of([&] { ImageDataset::load(tmp.path.string()); });
    CHECK(has(e, "no dataset found"));
    CHECK(has(e, tmp.path.string()));
    CHECK(has(e, "data_batch_1.bin"));
    CHECK(has(e, "train-images-idx3-ubyte"));

    std::string images = idx_images(3);
    write_bytes(tmp.file("cut-images-idx3-ubyte"), images.substr(0, images.size() - 10));
    e = error_of([&] { ImageDataset::load(tmp.file("cut-images-idx3-ubyte")); });
    CHECK(has(e, "cut-images-idx3-ubyte"));
    CHECK(has(e, "truncated"));

    write_bytes(tmp.file("short-images-idx3-ubyte"), images.substr(0, 6));
    e = error_of([&] { ImageDataset::load(tmp.file("short-images-idx3-ubyte")); });
    CHECK(has(e, "short-images-idx3-ubyte"));
    CHECK(has(e, "truncated"));

    write_gz(tmp.file("gz-images-idx3-ubyte.gz"), idx_images(40));
    std::string gz = read_bytes(tmp.file("gz-images-idx3-ubyte.gz"));
    write_bytes(tmp.file("gz-images-idx3-ubyte.gz"), gz.substr(0, gz.size() / 2));
    e = error_of([&] { ImageDataset::load(tmp.file("gz-images-idx3-ubyte.gz")); });
    CHECK(has(e, "gz-images-idx3-ubyte.gz"));
    CHECK(has(e, "truncated"));

    write_bytes(tmp.file("magic-images-idx3-ubyte"), idx_images(2, 28, 28, 0x00000801));
    e = error_of([&] { ImageDataset::load(tmp.file("magic-images-idx3-ubyte")); });
    CHECK(has(e, "magic-images-idx3-ubyte"));
    CHECK(has(e, "bad magic 0x00000801"));

    write_bytes(tmp.file("long-images-idx3-ubyte"), images + "xx");
    e = error_of([&] { ImageDataset::load(tmp.file("long-images-idx3-ubyte")); });
    CHECK(has(e, "long-images-idx3-ubyte"));
    CHECK(has(e, "size mismatch"));

    write_bytes(tmp.file("x-images-idx3-ubyte"), images);
    write_bytes(tmp.file("x-labels-idx1-ubyte"), idx_labels(5));
    e = error_of([&] { ImageDataset::load(tmp.file("x-images-idx3-ubyte")); });
    CHECK(has(e, "x-labels-idx1-ubyte"));
    CHECK(has(e, "5 labels"));

    write_bytes(tmp.file("notes.txt"), "hello world");
    e = error_of([&] { ImageDataset::load(tmp.file("notes.txt")); });
    CHECK(has(e, "notes.txt"));
    CHECK(has(e, "neither"));
}

TEST_CASE("load_labels: IDX1 files (gzipped or not) and CIFAR-10 batches; the test split beside a training set") {
    TempDir tmp;
    write_bytes(tmp.file("t10k-labels-idx1-ubyte"), idx_labels(7));
    write_gz(tmp.file("train-labels-idx1-ubyte.gz"), idx_labels(5));
    std::vector<int> want7, want5;
    for (int i = 0; i < 7; ++i) want7.push_back((i * 3) % 10);
    for (int i = 0; i < 5; ++i) want5.push_back((i * 3) % 10);
    CHECK(load_labels(tmp.file("t10k-labels-idx1-ubyte")) == want7);
    CHECK(load_labels(tmp.file("train-labels-idx1-ubyte.gz")) == want5);

    write_cifar(tmp.path / "cifar", 4);
    std::vector<int> cifar = load_labels((tmp.path / "cifar" / "data_batch_2.bin").string());
    REQUIRE(cifar.size() == 4);
    for (int r = 0; r < 4; ++r) CHECK(cifar[r] == cifar_label(2, r));

    // The held-out split: t10k beside IDX training images, test_batch.bin beside CIFAR-10 batches.
    CHECK(ImageDataset::test_split_path(tmp.path.string()).empty());
    write_gz(tmp.file("t10k-images-idx3-ubyte.gz"), idx_images(2));
    CHECK(ImageDataset::test_split_path(tmp.path.string()) == tmp.file("t10k-images-idx3-ubyte.gz"));
    CHECK(ImageDataset::test_split_path(tmp.file("train-labels-idx1-ubyte.gz")) == tmp.file("t10k-images-idx3-ubyte.gz"));
    fs::copy_file(tmp.path / "cifar" / "data_batch_1.bin", tmp.path / "cifar" / "test_batch.bin");
    CHECK(ImageDataset::test_split_path((tmp.path / "cifar").string()) == (tmp.path / "cifar" / "test_batch.bin").string());
}

TEST_CASE("load_labels errors name the file and what was expected") {
    TempDir tmp;
    std::string e = error_of([&] { load_labels(tmp.file("missing-labels-idx1-ubyte")); });
    CHECK(has(e, "missing-labels-idx1-ubyte"));
    CHECK(has(e, "does not exist"));

    write_bytes(tmp.file("images-as-labels-idx1-ubyte"), idx_images(2));
    e = error_of([&] { load_labels(tmp.file("images-as-labels-idx1-ubyte")); });
    CHECK(has(e, "images-as-labels-idx1-ubyte"));
    CHECK(has(e, "bad magic 0x00000803"));
    CHECK(has(e, "0x00000801"));

    std::string labels = idx_labels(9);
    write_bytes(tmp.file("cut-labels-idx1-ubyte"), labels.substr(0, labels.size() - 3));
    e = error_of([&] { load_labels(tmp.file("cut-labels-idx1-ubyte")); });
    CHECK(has(e, "cut-labels-idx1-ubyte"));
    CHECK(has(e, "truncated"));

    write_bytes(tmp.file("long-labels-idx1-ubyte"), labels + "x");
    e = error_of([&] { load_labels(tmp.file("long-labels-idx1-ubyte")); });
    CHECK(has(e, "size mismatch"));

    write_bytes(tmp.file("odd.bin"), std::string(3073 + 5, '\1'));
    e = error_of([&] { load_labels(tmp.file("odd.bin")); });
    CHECK(has(e, "odd.bin"));
    CHECK(has(e, "3073-byte"));

    write_bytes(tmp.file("notes.txt"), "hello world");
    e = error_of([&] { load_labels(tmp.file("notes.txt")); });
    CHECK(has(e, "notes.txt"));
    CHECK(has(e, "neither an IDX1 label file"));
}

TEST_CASE("batch scales to [-1, 1] in float32; label_batch is one-hot; subset keeps the first images") {
    std::vector<uint8_t> px(4 * 2 * 2);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 17);  // 0 .. 255
    ImageDataset d(px, {3, 1, 0, 2}, 4, 1, 2, 2, "synthetic");
    Tensor b = d.batch({3, 0, 3});
    REQUIRE(b.shape() == Shape{3, 1, 2, 2});
    CHECK(b.dtype() == DType::F32);
    CHECK(b.device().is_cpu());
    const float* v = b.data<float>();
    for (int k = 0; k < 3; ++k) {
        int img = k == 1 ? 0 : 3;
        for (int j = 0; j < 4; ++j) CHECK(v[k * 4 + j] == static_cast<float>(px[img * 4 + j]) / 127.5f - 1.0f);
    }
    CHECK(v[0 * 4 + 3] == 1.0f);  // 255
    CHECK(v[1 * 4 + 0] == -1.0f);  // 0
    CHECK(has(error_of([&] { d.batch({4}); }), "out of range"));

    Tensor l = d.label_batch({0, 2}, 4);
    CHECK(l.to_vector() == std::vector<double>{0, 0, 0, 1, 1, 0, 0, 0});
    CHECK(has(error_of([&] { d.label_batch({0}, 3); }), "label_dim"));

    ImageDataset s = d.subset(2);
    CHECK(s.size() == 2);
    CHECK(s.label(1) == 1);
    CHECK(s.image(1)[3] == px[7]);
    CHECK(d.subset(100).size() == 4);
}

TEST_CASE("InfiniteSampler: seeded permutations per epoch, exact resume") {
    const int64_t n = 23;
    InfiniteSampler a(n, 7), b(n, 7), other(n, 8);
    std::vector<int64_t> sa = a.next(5 * n), sb = b.next(5 * n), so = other.next(5 * n);
    CHECK(sa == sb);
    CHECK(sa != so);
    std::set<std::vector<int64_t>> epochs;
    for (int e = 0; e < 5; ++e) {
        std::vector<int64_t> ep(sa.begin() + e * n, sa.begin() + (e + 1) * n);
        CHECK(ep == a.permutation(e));
        std::vector<int64_t> sorted = ep;
        std::sort(sorted.begin(), sorted.end());
        for (int64_t i = 0; i < n; ++i) REQUIRE(sorted[i] == i);
        epochs.insert(ep);
    }
    CHECK(epochs.size() == 5);  // every epoch reshuffled

    // Stop part way through an epoch, resume in a new sampler, and continue identically.
    InfiniteSampler run(n, 99);
    run.next(37);
    InfiniteSampler::State st = run.state();
    CHECK(st.epoch == 1);
    CHECK(st.position == 14);
    std::vector<int64_t> cont = run.next(50);
    InfiniteSampler resumed(n, 99);
    resumed.set_state(st);
    CHECK(resumed.next(50) == cont);
    CHECK(resumed.state() == run.state());

    // Random access: position p of the stream, across epoch boundaries, is what next() reaches there.
    InfiniteSampler direct(n, 7);
    CHECK(direct.take(40, 30) == std::vector<int64_t>(sa.begin() + 40, sa.begin() + 70));
    CHECK(direct.take(3, 2) == std::vector<int64_t>(sa.begin() + 3, sa.begin() + 5));

    InfiniteSampler ordered(5, 1, /*shuffle=*/false);
    CHECK(ordered.next(7) == std::vector<int64_t>{0, 1, 2, 3, 4, 0, 1});
    CHECK(has(error_of([&] { resumed.set_state({0, n + 1}); }), "bad state"));
    CHECK(has(error_of([] { InfiniteSampler(0, 1); }), "at least one"));
}

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
}

// ---- plot ------------------------------------------------------------------------------------------

TEST_CASE("line plots: requested size, lines drawn in their colours, robust to odd data") {
    TempDir tmp;
    Series rising{"loss", {}, {}, {255, 0, 0}};
    Series flat{"ema", {}, {}, {0, 0, 255}};
    for (int i = 0; i <= 100; ++i) {
        rising.x.push_back(i);
        rising.y.push_back(0.5 + i * 0.01);
        flat.x.push_back(i);
        flat.y.push_back(i == 50 ? NAN : 1.0);
    }
    PlotOptions o;
    o.title = "Training loss";
    o.x_label = "step (kimg)";
    o.y_label = "loss";
    o.width = 320;
    o.height = 240;
    write_line_plot_png(tmp.file("plot.png"), {rising, flat}, o);
    int w, h, c;
    std::vector<uint8_t> px = read_png(tmp.file("plot.png"), w, h, c);
    REQUIRE(w == 320);
    REQUIRE(h == 240);
    REQUIRE(c == 3);
    CHECK(px == render_line_plot({rising, flat}, o));
    auto count = [&](Rgb col, int x0, int x1) {
        int k = 0;
        for (int y = 0; y < h; ++y)
            for (int x = x0; x < x1; ++x) {
                const uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
                k += p[0] == col[0] && p[1] == col[1] && p[2] == col[2];
            }
        return k;
    };
    // The red line runs across the plot, bottom left to top right.
    CHECK(count({255, 0, 0}, 0, w / 3) > 20);
    CHECK(count({255, 0, 0}, 2 * w / 3, w) > 20);
    int first_red_row_left = -1, first_red_row_right = -1;
    for (int y = 0; y < h && (first_red_row_left < 0 || first_red_row_right < 0); ++y)
        for (int x = 0; x < w; ++x) {
            const uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
            if (p[0] == 255 && p[1] == 0 && p[2] == 0) {
                if (x > 2 * w / 3 && first_red_row_right < 0) first_red_row_right = y;
                if (x < w / 3 && x > 60 && first_red_row_left < 0) first_red_row_left = y;
            }
        }
    CHECK(first_red_row_right < first_red_row_left);
    CHECK(count({0, 0, 255}, 0, w) > 100);  // the flat line, broken at the NaN
    int black = count({0, 0, 0}, 0, w);
    CHECK(black > 200);  // labels and title text

    // Nothing to draw, NaNs only, a single point, log axis with non-positive values: no crash.
    render_line_plot({}, o);
    render_line_plot({Series{"empty", {}, {}}}, o);
    render_line_plot({Series{"nan", {1, 2}, {NAN, NAN}}}, o);
    std::vector<uint8_t> one = render_line_plot({Series{"", {3}, {4}, {0, 200, 0}}}, o);
    int green = 0;
    for (size_t i = 0; i < one.size(); i += 3) green += one[i] == 0 && one[i + 1] == 200 && one[i + 2] == 0;
    CHECK(green >= 9);  // a 3x3 dot
    PlotOptions lo = o;
    lo.log_y = true;
    render_line_plot({Series{"var", {0, 1, 2, 3, 4}, {1e-4, 0, -1, 1e2, INFINITY}}}, lo);
    render_line_plot({Series{"var", {0, 1, 2}, {0.03, 0.05, 0.08}}}, lo);  // less than a decade
    lo.y_min = 1e-3;
    lo.y_max = 10;
    render_line_plot({Series{"var", {0, 1}, {1e-5, 1e5}}}, lo);
    CHECK(has(error_of([&] { render_line_plot({Series{"bad", {1, 2}, {1}}}, o); }), "bad"));
    PlotOptions tiny = o;
    tiny.width = 10;
    CHECK(has(error_of([&] { render_line_plot({}, tiny); }), "size"));
}

TEST_CASE("the bitmap font draws known glyphs and a box for unknown ones") {
    const int w = 40, h = 10;
    std::vector<uint8_t> px(w * h * 3, 255);
    draw_text(px, w, h, 1, 1, "1", {0, 0, 0});
    // '1': row 0 is "..#..", row 6 is ".###."
    auto dark = [&](int x, int y) { return px[(y * w + x) * 3] == 0; };
    CHECK(dark(1 + 2, 1));
    CHECK_FALSE(dark(1 + 0, 1));
    CHECK(dark(1 + 1, 7));
    CHECK(dark(1 + 3, 7));
    std::vector<uint8_t> q(w * h * 3, 255);
    draw_text(q, w, h, 0, 0, "\x01", {0, 0, 0});
    int k = 0;
    for (size_t i = 0; i < q.size(); i += 3) k += q[i] == 0;
    CHECK(k == 5 + 5 + 2 * 5);  // the outline of a 5x7 box
    CHECK(text_width("abc") == 17);
    CHECK(text_width("abc", 2) == 34);
}

// ---- progress --------------------------------------------------------------------------------------

TEST_CASE("ProgressBar renders a bar and stays quiet off a terminal") {
    ProgressBar bar(10, "sampling");
    std::string line = bar.render(5, "loss 0.1", 2.0);
    CHECK(has(line, "sampling ["));
    CHECK(has(line, " 50% 5/10"));
    CHECK(has(line, "2.5/s"));
    CHECK(has(line, "loss 0.1"));
    ProgressBar unknown(0, "");
    CHECK(has(unknown.render(7, "", 1.0), "7 7/s"));
    for (int i = 0; i <= 10; ++i) bar.update(i);
    bar.finish();
    bar.finish();
    CHECK(bar.enabled() == (::isatty(STDERR_FILENO) == 1));
}

// ---- Fashion-MNIST (Debian's dataset-fashion-mnist) --------------------------------------------------

TEST_CASE("Fashion-MNIST from Debian's package, when installed") {
    std::string dir = ImageDataset::default_fashion_mnist_path();
    if (!fs::exists(fs::path(dir) / "train-images-idx3-ubyte.gz")) {
        MESSAGE("skipped: Fashion-MNIST not found at " << dir << " (apt-get install dataset-fashion-mnist)");
        return;
    }
    ImageDataset d = ImageDataset::load(dir);
    CHECK(d.size() == 60000);
    CHECK(d.channels() == 1);
    CHECK(d.height() == 32);
    CHECK(d.width() == 32);
    REQUIRE(d.has_labels());
    CHECK(d.num_classes() == 10);
    std::vector<int> counts(10, 0);
    for (int l : d.labels()) {
        REQUIRE(l >= 0);
        REQUIRE(l < 10);
        ++counts[l];
    }
    for (int k = 0; k < 10; ++k) CHECK(counts[k] == 6000);
    // The 2-pixel padding is zero everywhere; the 28x28 content is not.
    int64_t border = 0, inside = 0;
    for (int64_t i = 0; i < 100; ++i) {
        const uint8_t* img = d.image(i);
        for (int y = 0; y < 32; ++y)
            for (int x = 0; x < 32; ++x) {
                bool in = y >= 2 && y < 30 && x >= 2 && x < 30;
                (in ? inside : border) += img[y * 32 + x];
            }
    }
    CHECK(border == 0);
    CHECK(inside > 0);
    MESSAGE("Fashion-MNIST: " << d.source());
}

TEST_CASE("Fashion-MNIST test labels from Debian's package, when installed") {
    std::string dir = ImageDataset::default_fashion_mnist_path();
    if (!fs::exists(fs::path(dir) / "t10k-labels-idx1-ubyte.gz")) {
        MESSAGE("skipped: Fashion-MNIST not found at " << dir << " (apt-get install dataset-fashion-mnist)");
        return;
    }
    CHECK(ImageDataset::test_split_path(dir) == dir + "/t10k-images-idx3-ubyte.gz");
    std::vector<int> labels = load_labels(dir + "/t10k-labels-idx1-ubyte.gz");
    REQUIRE(labels.size() == 10000);
    std::vector<int> counts(10, 0);
    for (int l : labels) {
        REQUIRE(l >= 0);
        REQUIRE(l < 10);
        ++counts[l];
    }
    for (int k = 0; k < 10; ++k) CHECK(counts[k] == 1000);
}
