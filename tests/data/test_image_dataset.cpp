// EDM's PNG datasets: a ZIP (written here with libzip, deflated or stored) and a folder hold the same
// images and labels as the IDX files they came from; dataset_tool's layout written and read back; x-flips;
// and every bad archive fails naming the file and what was expected.
#include <doctest/doctest.h>
#include <zip.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <tuple>
#include <utility>

#include "data/dataset.h"
#include "data/image_dataset.h"
#include "data/image_folder.h"
#include "data/image_io.h"
#include "tests/expect_error.h"
#include "tests/temp_files.h"

using namespace stf;
using namespace stf::data;
using test::error_of;
using test::has;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_image_dataset_test") {}
};

using Files = std::vector<std::pair<std::string, std::string>>;  // name in the archive, bytes

// A ZIP written by libzip itself (not by the code under test); deflated unless `stored`.
void write_zip(const std::string& path, const Files& files, bool stored = false) {
    int code = 0;
    zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
    REQUIRE(za != nullptr);
    for (const auto& [name, bytes] : files) {
        zip_source_t* s = zip_source_buffer(za, bytes.data(), bytes.size(), 0);
        REQUIRE(s != nullptr);
        zip_int64_t i = zip_file_add(za, name.c_str(), s, ZIP_FL_ENC_UTF_8);
        REQUIRE(i >= 0);
        REQUIRE(zip_set_file_compression(za, static_cast<zip_uint64_t>(i), stored ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0) == 0);
    }
    REQUIRE(zip_close(za) == 0);
}

void write_folder(const fs::path& dir, const Files& files) {
    for (const auto& [name, bytes] : files) {
        fs::create_directories((dir / name).parent_path());
        test::write_bytes((dir / name).string(), bytes);
    }
}

// PNG bytes from stb_image_write (data/image_io.h), an encoder independent of the reader.
std::string png(const TempDir& tmp, const std::vector<uint8_t>& hwc, int h, int w, int c) {
    std::string path = tmp.file("encode.png");
    write_png(path, hwc.data(), h, w, c);
    return test::read_bytes(path);
}

uint8_t pixel(int n, int y, int x, int ch) { return static_cast<uint8_t>(n * 37 + y * 11 + x * 5 + ch * 80 + 3); }

std::vector<uint8_t> hwc_image(int n, int h, int w, int c) {
    std::vector<uint8_t> v;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch) v.push_back(pixel(n, y, x, ch));
    return v;
}

std::string be32(uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
    return s;
}

std::string labels_json(const std::vector<std::string>& names, const std::vector<int>& labels) {
    std::string s = "{\"labels\": [";
    for (size_t k = 0; k < names.size(); ++k)
        s += (k ? ", [\"" : "[\"") + names[k] + "\", " + std::to_string(labels[k]) + "]";
    return s + "]}";
}

// The first images of a dataset, pixel for pixel and label for label.
void check_same(const ImageDataset& a, const ImageDataset& b) {
    REQUIRE(a.size() == b.size());
    REQUIRE(a.channels() == b.channels());
    REQUIRE(a.height() == b.height());
    REQUIRE(a.width() == b.width());
    CHECK(a.pixels() == b.pixels());
    CHECK(a.labels() == b.labels());
}

// An EDM-style archive of valid 8x8 RGB images named as dataset_tool names them, for the error cases.
Files rgb_files(const TempDir& tmp, int n, bool with_labels = true) {
    Files files;
    std::vector<std::string> names;
    std::vector<int> labels;
    for (int k = 0; k < n; ++k) {
        names.push_back("00000/img0000000" + std::to_string(k) + ".png");
        labels.push_back(k % 3);
        files.emplace_back(names.back(), png(tmp, hwc_image(k, 8, 8, 3), 8, 8, 3));
    }
    if (with_labels) files.emplace_back("dataset.json", labels_json(names, labels));
    return files;
}

std::string load_error(const TempDir& tmp, const Files& files, const std::string& name = "bad.zip") {
    write_zip(tmp.file(name), files);
    return error_of([&] { ImageDataset::load(tmp.file(name), 0); });
}

}  // namespace

TEST_CASE("a ZIP and a folder of PNGs hold the same images and labels as the IDX files they were made from") {
    TempDir tmp;
    // Five 28x28 grey images and their labels as IDX files...
    const int n = 5, h = 28, w = 28;
    std::string idx = be32(0x00000803) + be32(n) + be32(h) + be32(w), idx_lab = be32(0x00000801) + be32(n);
    std::vector<int> labels = {4, 0, 2, 2, 9};
    for (int k = 0; k < n; ++k) {
        for (uint8_t v : hwc_image(k, h, w, 1)) idx.push_back(static_cast<char>(v));
        idx_lab.push_back(static_cast<char>(labels[k]));
    }
    test::write_bytes(tmp.file("train-images-idx3-ubyte"), idx);
    test::write_bytes(tmp.file("train-labels-idx1-ubyte"), idx_lab);
    // ...and as PNGs named so that their sorted order, the order EDM reads them in, is the IDX order
    // although they are added to the archive in another order.
    Files files;
    std::vector<std::string> names;
    for (int k = n - 1; k >= 0; --k) {
        std::string name = (k < 3 ? "00000/img0000000" : "00001/img0000100") + std::to_string(k) + ".png";
        files.emplace_back(name, png(tmp, hwc_image(k, h, w, 1), h, w, 1));
        names.push_back(name);
    }
    std::vector<int> reversed(labels.rbegin(), labels.rend());
    files.emplace_back("dataset.json", labels_json(names, reversed));
    write_zip(tmp.file("deflated.zip"), files);
    write_zip(tmp.file("stored.zip"), files, /*stored=*/true);
    write_folder(tmp.path / "folder", files);

    ImageDataset from_idx = ImageDataset::load(tmp.file("train-images-idx3-ubyte"), 0);
    REQUIRE(from_idx.labels() == labels);
    for (const std::string& path : {tmp.file("deflated.zip"), tmp.file("stored.zip"), tmp.file("folder")}) {
        CAPTURE(path);
        ImageDataset d = ImageDataset::load(path, 0);
        check_same(d, from_idx);
        CHECK(d.num_classes() == 10);
        CHECK(has(d.source(), path));
    }
    // Padded to 32 like any other dataset.
    check_same(ImageDataset::load(tmp.file("stored.zip")), ImageDataset::load(tmp.file("train-images-idx3-ubyte")));

    // No dataset.json, or {"labels": null}: no labels.
    files.pop_back();
    write_zip(tmp.file("unlabelled.zip"), files);
    CHECK_FALSE(ImageDataset::load(tmp.file("unlabelled.zip"), 0).has_labels());
    files.emplace_back("dataset.json", "{\"labels\": null}");
    write_zip(tmp.file("null.zip"), files);
    ImageDataset null_labels = ImageDataset::load(tmp.file("null.zip"), 0);
    CHECK_FALSE(null_labels.has_labels());
    CHECK(null_labels.pixels() == from_idx.pixels());
}

TEST_CASE("RGB PNGs land as CHW bytes; any resolution") {
    TempDir tmp;
    Files files;
    for (int k = 0; k < 3; ++k) files.emplace_back("img" + std::to_string(k) + ".png", png(tmp, hwc_image(k, 16, 16, 3), 16, 16, 3));
    write_zip(tmp.file("rgb.zip"), files);
    ImageDataset d = ImageDataset::load(tmp.file("rgb.zip"), 0);
    REQUIRE(d.size() == 3);
    CHECK(d.channels() == 3);
    CHECK(d.height() == 16);
    CHECK(d.width() == 16);
    for (int k = 0; k < 3; ++k)
        for (int ch = 0; ch < 3; ++ch)
            for (int y : {0, 7, 15})
                for (int x : {0, 9, 15}) CHECK(d.image(k)[(ch * 16 + y) * 16 + x] == pixel(k, y, x, ch));
}

TEST_CASE("write_image_dataset writes EDM's dataset_tool layout, which reads back as the same dataset") {
    TempDir tmp;
    std::vector<uint8_t> px(6 * 3 * 4 * 4);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7 + 1);
    ImageDataset d(px, {1, 0, 3, 1, 2, 0}, 6, 3, 4, 4, "synthetic");
    write_image_dataset(tmp.file("out/set.zip"), d);
    write_image_dataset(tmp.file("dir"), d);
    for (const std::string& path : {tmp.file("out/set.zip"), tmp.file("dir")}) {
        CAPTURE(path);
        check_same(ImageDataset::load(path, 0), d);
    }
    CHECK(fs::is_regular_file(tmp.path / "dir" / "00000" / "img00000005.png"));
    CHECK(test::read_bytes(tmp.file("dir/dataset.json")) ==
          R"({"labels":[["00000/img00000000.png",1],["00000/img00000001.png",0],["00000/img00000002.png",3],)"
          R"(["00000/img00000003.png",1],["00000/img00000004.png",2],["00000/img00000005.png",0]]})");
    // Stored entries, as EDM's dataset_tool writes (zipfile.ZIP_STORED).
    zip_t* za = zip_open(tmp.file("out/set.zip").c_str(), ZIP_RDONLY, nullptr);
    REQUIRE(za != nullptr);
    CHECK(zip_get_num_entries(za, 0) == 7);
    zip_stat_t st;
    REQUIRE(zip_stat(za, "00000/img00000002.png", 0, &st) == 0);
    CHECK(st.comp_method == ZIP_CM_STORE);
    zip_discard(za);

    ImageDataset grey(std::vector<uint8_t>(2 * 4), {}, 2, 1, 2, 2, "unlabelled");
    write_image_dataset(tmp.file("grey.zip"), grey);
    ImageDataset back = ImageDataset::load(tmp.file("grey.zip"), 0);
    CHECK_FALSE(back.has_labels());
    CHECK(back.channels() == 1);
    CHECK(has(error_of([&] { write_image_dataset(tmp.file("dir"), d); }), "not an empty directory"));
}

TEST_CASE("./fid's image folder reader and the dataset reader decode the same PNGs to the same bytes") {
    // One decoder (data/image_folder.h) behind both: an EDM folder read file by file as ./fid calc
    // reads sample folders equals the dataset ImageDataset::load reads.
    TempDir tmp;
    std::vector<uint8_t> px(4 * 3 * 5 * 5);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 13 + 2);
    ImageDataset d(px, {}, 4, 3, 5, 5, "synthetic");
    write_image_dataset(tmp.file("dir"), d);
    const std::vector<std::string> files = list_image_files(tmp.file("dir"));
    REQUIRE(files.size() == 4);
    for (int64_t k = 0; k < 4; ++k) {
        DecodedImage img = read_image(files[static_cast<size_t>(k)]);
        REQUIRE(img.channels == 3);
        REQUIRE(img.height == 5);
        REQUIRE(img.width == 5);
        CHECK(std::equal(img.chw.begin(), img.chw.end(), d.image(k)));
    }
    const std::string bytes = test::read_bytes(files[0]);
    ImageHeader head = read_image_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    CHECK(head.ok);
    CHECK(head.channels == 3);
    CHECK_FALSE(head.sixteen_bit);
    const std::string junk = "not an image at all";
    CHECK_FALSE(read_image_header(reinterpret_cast<const uint8_t*>(junk.data()), junk.size()).ok);
    CHECK(has(error_of([&] { decode_image(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), "'junk'"); }),
              "cannot read 'junk' as an image"));
    CHECK(has(error_of([&] { read_image(tmp.file("dir")); }), "is not a regular file"));
}

TEST_CASE("--xflip: image i + N is image i mirrored, with its label; nothing is copied") {
    std::vector<uint8_t> px = {1, 2, 3, 4, 5, 6,     // image 0, channel 0: rows {1 2 3} {4 5 6}
                               7, 8, 9, 10, 11, 12};  // image 1
    ImageDataset d(px, {3, 5}, 2, 1, 2, 3, "synthetic");
    d.set_xflip(true);
    REQUIRE(d.size() == 4);
    CHECK(d.stored_size() == 2);
    CHECK(d.label(2) == 3);
    CHECK(d.label(3) == 5);
    auto bytes = [](const Tensor& t) {
        std::vector<int> v;
        for (double x : t.to_vector()) v.push_back(static_cast<int>(std::lround((x + 1) * 127.5)));
        return v;
    };
    CHECK(bytes(d.batch({2, 1})) == std::vector<int>{3, 2, 1, 6, 5, 4, 7, 8, 9, 10, 11, 12});
    CHECK(bytes(d.batch({3})) == std::vector<int>{9, 8, 7, 12, 11, 10});
    CHECK(d.label_batch({3, 0}, 6).to_vector() == std::vector<double>{0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0});
    CHECK(has(error_of([&] { d.batch({4}); }), "out of range for 4 images"));
    CHECK(d.subset(1).size() == 1);  // EDM applies max_size before the x-flips
}

TEST_CASE("bad PNG datasets fail naming the archive, the file inside and what was expected") {
    TempDir tmp;
    std::string e;

    SUBCASE("not a ZIP") {
        test::write_bytes(tmp.file("notes.zip"), "hello, this is not an archive");
        e = error_of([&] { ImageDataset::load(tmp.file("notes.zip")); });
        CHECK(has(e, "notes.zip"));
        CHECK(has(e, "is not a ZIP archive"));
    }
    SUBCASE("zero images") {
        e = load_error(tmp, {{"dataset.json", "{\"labels\": null}"}, {"readme.txt", "no images"}});
        CHECK(has(e, "bad.zip"));
        CHECK(has(e, "holds no PNG images"));
        fs::create_directories(tmp.path / "empty");
        test::write_bytes(tmp.file("empty/dataset.json"), "{\"labels\": null}");
        e = error_of([&] { ImageDataset::load(tmp.file("empty")); });
        CHECK(has(e, "image folder"));
        CHECK(has(e, "holds no PNG images"));
    }
    SUBCASE("images of another size") {
        Files files = rgb_files(tmp, 3);
        files[1].second = png(tmp, hwc_image(1, 16, 16, 3), 16, 16, 3);
        e = load_error(tmp, files);
        CHECK(has(e, "'00000/img00000001.png' in '" + tmp.file("bad.zip") + "' is 16x16 with 3 channels"));
        CHECK(has(e, "'00000/img00000000.png' is 8x8 with 3 channels"));
        CHECK(has(e, "same size and channels"));
    }
    SUBCASE("images with other channels") {
        Files files = rgb_files(tmp, 3);
        files[2].second = png(tmp, hwc_image(2, 8, 8, 1), 8, 8, 1);
        e = load_error(tmp, files);
        CHECK(has(e, "img00000002.png"));
        CHECK(has(e, "8x8 with 1 channel"));
        files[2].second = png(tmp, hwc_image(2, 8, 8, 4), 8, 8, 4);
        e = load_error(tmp, files);
        CHECK(has(e, "img00000002.png"));
        CHECK(has(e, "4 channels (RGBA); expected 1 (grey) or 3 (RGB)"));
    }
    SUBCASE("a file that is not a PNG, and JPEGs beside the PNGs") {
        Files files = rgb_files(tmp, 3);
        files[0].second = "GIF89a not a png at all";
        e = load_error(tmp, files);
        CHECK(has(e, "img00000000.png"));
        CHECK(has(e, "not a readable PNG"));
        files = rgb_files(tmp, 3);
        files[1].second.resize(60);  // a PNG cut short
        e = load_error(tmp, files);
        CHECK(has(e, "img00000001.png"));
        CHECK(has(e, "PNG"));
        files = rgb_files(tmp, 3);
        files.emplace_back("extra/photo.jpg", "\xff\xd8\xff");
        e = load_error(tmp, files);
        CHECK(has(e, "1 .jpg files; stf reads PNG images only"));
    }
    SUBCASE("an entry claiming more bytes than its compressed data can hold") {
        // A deflated PNG whose headers claim 600 MB: found by fuzz_dataset, where allocating the claim took seconds.
        write_zip(tmp.file("bomb.zip"), rgb_files(tmp, 3));
        std::string bytes = test::read_bytes(tmp.file("bomb.zip"));
        const std::string name = "00000/img00000001.png";
        int patched = 0;
        for (size_t at = bytes.find(name); at != std::string::npos; at = bytes.find(name, at + 1)) {
            // The uncompressed size sits 22 bytes into a local header (name at 30), 24 into a central one (name at 46).
            for (auto [head, sig, field] : {std::tuple{size_t(30), "PK\x03\x04", size_t(22)},
                                            std::tuple{size_t(46), "PK\x01\x02", size_t(24)}}) {
                if (at < head || bytes.compare(at - head, 4, sig) != 0) continue;
                const uint32_t claim = 600000000;
                for (int b = 0; b < 4; ++b) bytes[at - head + field + b] = static_cast<char>((claim >> (8 * b)) & 0xff);
                ++patched;
            }
        }
        REQUIRE(patched == 2);
        test::write_bytes(tmp.file("bomb.zip"), bytes);
        e = error_of([&] { ImageDataset::load(tmp.file("bomb.zip")); });
        CHECK(has(e, "'00000/img00000001.png' in '" + tmp.file("bomb.zip") + "' claims 600000000 bytes from "));
        CHECK(has(e, "more than deflate can expand (1032-fold): the archive is corrupt"));
    }
    SUBCASE("a label list naming a file the archive does not hold") {
        Files files = rgb_files(tmp, 2, false);
        files.emplace_back("dataset.json", labels_json({"00000/img00000000.png", "00000/img00000001.png",
                                                        "00000/img00000007.png"}, {0, 1, 2}));
        e = load_error(tmp, files);
        CHECK(has(e, "'dataset.json' in '" + tmp.file("bad.zip") + "'"));
        CHECK(has(e, "labels '00000/img00000007.png', which is not a PNG image"));
    }
    SUBCASE("an image without a label") {
        Files files = rgb_files(tmp, 3, false);
        files.emplace_back("dataset.json", labels_json({"00000/img00000000.png", "00000/img00000002.png"}, {0, 1}));
        e = load_error(tmp, files);
        CHECK(has(e, "has no label for '00000/img00000001.png'"));
    }
    SUBCASE("classes out of range, and labels that are not classes") {
        Files files = rgb_files(tmp, 2, false);
        files.emplace_back("dataset.json", labels_json({"00000/img00000000.png", "00000/img00000001.png"}, {0, -1}));
        e = load_error(tmp, files);
        CHECK(has(e, "class -1 of '00000/img00000001.png' is out of range (expected 0 .. 65535)"));
        files.back().second = labels_json({"00000/img00000000.png", "00000/img00000001.png"}, {70000, 1});
        e = load_error(tmp, files);
        CHECK(has(e, "class 70000"));
        files.back().second = R"({"labels": [["00000/img00000000.png", [0.5, 0.5]], ["00000/img00000001.png", 1]]})";
        e = load_error(tmp, files);
        CHECK(has(e, "expected an integer class"));
        files.back().second = R"({"labels": [["00000/img00000000.png", 0], ["00000/img00000001.png", 1]],)";
        e = load_error(tmp, files);
        CHECK(has(e, "dataset.json"));
        CHECK(has(e, "is not valid JSON"));
        files.back().second = R"({"classes": []})";
        e = load_error(tmp, files);
        CHECK(has(e, "has no \"labels\" key"));
    }
    SUBCASE("a folder names its file too") {
        Files files = rgb_files(tmp, 3);
        files[1].second = png(tmp, hwc_image(1, 4, 4, 3), 4, 4, 3);
        write_folder(tmp.path / "folder", files);
        e = error_of([&] { ImageDataset::load(tmp.file("folder")); });
        CHECK(has(e, "'00000/img00000001.png' in '" + tmp.file("folder") + "' is 4x4"));
    }
}
