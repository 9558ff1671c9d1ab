// Datasets on disk: CIFAR-10 binary batches, IDX files gzipped or not, padding, label files, the held-out
// split, batches in [-1, 1] and every error a bad file gives; Debian's Fashion-MNIST when installed.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/dataset.h"
#include "data/image_io.h"
#include "data/npz.h"
#include "tensor/ops.h"
#include "tests/expect_error.h"
#include "tests/requirements.h"
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

// A 16-byte IDX header of 256 images of 2^28 x 2^28 and no data: the size product wrapped to 0, passed
// every size check, and the first image read segfaulted (train_cifar --res 0, stf_variance).
TEST_CASE("an IDX header whose sizes overflow 64 bits is refused, not read as empty") {
    TempDir tmp;
    write_bytes(tmp.file("wrap-images-idx3-ubyte"), be32(0x00000803) + be32(256) + be32(1u << 28) + be32(1u << 28));
    for (int64_t pad : {0, 32}) {
        std::string e = error_of([&] { ImageDataset::load(tmp.file("wrap-images-idx3-ubyte"), pad); });
        CHECK(has(e, "wrap-images-idx3-ubyte"));
        CHECK(has(e, "malformed"));
    }
    // The constructor checks its own product too.
    CHECK(has(error_of([] { ImageDataset({}, {}, 256, 1, int64_t(1) << 28, int64_t(1) << 28, "x"); }), "overflows"));
}

// --max-images takes the first images before padding: 8 M tiny images and --max-images 100 padded all
// 8 M to 32x32 (8 GiB) before keeping 100.
TEST_CASE("load keeps the first max_images images before padding them") {
    TempDir tmp;
    write_bytes(tmp.file("tiny-images-idx3-ubyte"), idx_images(5, 2, 3));
    ImageDataset d = ImageDataset::load(tmp.file("tiny-images-idx3-ubyte"), 32, 2);
    CHECK(d.size() == 2);
    CHECK(d.height() == 32);
    CHECK(d.width() == 32);
    CHECK(d.image(1)[15 * 32 + 14] == idx_pixel(1, 0, 0));  // centred: 30 rows above... top (32-2)/2 = 15, left 14
    CHECK(has(d.source(), "first 2"));
    CHECK(ImageDataset::load(tmp.file("tiny-images-idx3-ubyte"), 0, 0).size() == 5);
    CHECK(has(error_of([&] { ImageDataset::load(tmp.file("tiny-images-idx3-ubyte"), 32, -5); }), "-5"));
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


// ---- Fashion-MNIST (Debian's dataset-fashion-mnist) --------------------------------------------------

TEST_CASE("Fashion-MNIST from Debian's package: 60,000 padded images, 10 balanced classes" * test::needs_fashion_mnist()) {
    std::string dir = ImageDataset::default_fashion_mnist_path();
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

TEST_CASE("Fashion-MNIST test labels from Debian's package" * test::needs_fashion_mnist()) {
    std::string dir = ImageDataset::default_fashion_mnist_path();
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

// A FIFO given as --data, --net or --latents blocked the reader forever.
TEST_CASE("readers refuse a FIFO instead of blocking on it") {
    TempDir tmp;
    const std::string fifo = tmp.file("pipe");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(has(error_of([&] { ImageDataset::load(fifo); }), "is not a regular file"));
    CHECK(has(error_of([&] { stf::data::load_labels(fifo); }), "is not a regular file"));
    CHECK(has(error_of([&] { stf::data::read_npy(fifo); }), "is not a regular file"));
    CHECK(has(error_of([&] { stf::data::read_npz(fifo); }), "is not a regular file"));
}
