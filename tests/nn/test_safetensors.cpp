// Safetensors files: bit-exact round trips, the exact bytes we write, and a clean error (never a
// crash or a read past the end) for every kind of damaged file we can craft.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/temp_files.h"
#include "nn/safetensors.h"
#include "tensor/ops.h"

using namespace stf;
using namespace stf::nn;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
    TempDir() : test::TempDir("stf_safetensors_test") {}
};
using test::read_bytes;
using test::write_bytes;


std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

// A file from a hand-written header and data section (the header is used as is, unpadded).
std::string craft(const std::string& header, const std::string& data = "") { return le64(header.size()) + header + data; }

// The raw bytes of a tensor in C order: what a bit-exact comparison compares.
std::string bytes_of(const Tensor& t) {
    Tensor c = ops::contiguous(t);
    const char* p = static_cast<const char*>(c.raw_data());
    return std::string(p, p + c.numel() * dtype_size(c.dtype()));
}

// A tensor holding the given bit patterns (so NaN payloads, -0 and subnormals are tested too).
template <class Bits> Tensor from_bits(const std::vector<Bits>& bits, const Shape& shape, DType dtype) {
    REQUIRE(sizeof(Bits) == dtype_size(dtype));
    Tensor t = Tensor::empty(shape, dtype);
    REQUIRE(static_cast<size_t>(t.numel()) == bits.size());
    if (!bits.empty()) std::memcpy(t.raw_data(), bits.data(), bits.size() * sizeof(Bits));
    return t;
}

// Loading `path` must throw stf::Error whose message names the file and contains `fragment`.
void check_load_fails(const std::string& path, const std::string& fragment) {
    CAPTURE(fragment);
    try {
        load_safetensors(path);
        FAIL("loaded a bad file without error");
    } catch (const Error& e) {
        std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find(path) != std::string::npos);
        CHECK(msg.find(fragment) != std::string::npos);
    }
}

void check_bad_header(const TempDir& dir, const std::string& header, const std::string& data,
                      const std::string& fragment) {
    CAPTURE(header);
    std::string path = dir.file("bad.safetensors");
    write_bytes(path, craft(header, data));
    check_load_fails(path, fragment);
}

// A save that must fail with `fragment` in the message and leave the directory exactly as it was.
void check_save_fails(const TempDir& dir, const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata, const std::string& fragment) {
    auto before = dir.entries();
    std::string old = fs::exists(path) ? read_bytes(path) : "";
    CHECK_THROWS_WITH_AS(save_safetensors(path, tensors, metadata), doctest::Contains(fragment.c_str()), Error);
    CHECK(dir.entries() == before);  // no temporary file left behind
    if (fs::exists(path)) CHECK(read_bytes(path) == old);
}

NamedTensors sample_tensors() {
    Tensor f32 = from_bits<uint32_t>({0x3f800000u, 0x80000000u, 0x7fc00123u, 0x00000001u, 0xff800000u, 0x40490fdbu},
                                     {2, 3}, DType::F32);
    Tensor f64 = from_bits<uint64_t>({0x3ff0000000000000ull, 0x8000000000000000ull, 0x7ff8000000000abcull,
                                      0x0000000000000001ull},
                                     {4}, DType::F64);
    Tensor bf16 = from_bits<uint16_t>({0x3f80, 0xbf80, 0x7fc1, 0x0001, 0x7f80, 0x8000}, {3, 1, 2}, DType::BF16);
    Tensor scalar = from_bits<uint32_t>({0xc0490fdbu}, {}, DType::F32);  // 0-d
    Tensor empty = Tensor::empty({0, 3}, DType::F32);
    return {{"model.enc.32x32_conv.weight", f32}, {"f64", f64}, {"bf16", bf16}, {"scalar", scalar}, {"empty", empty}};
}

}  // namespace

TEST_CASE("safetensors: F32, F64 and BF16 tensors round-trip bit for bit, in order") {
    TempDir dir;
    std::string path = dir.file("weights.safetensors");
    NamedTensors in = sample_tensors();
    save_safetensors(path, in);
    SafetensorsFile out = load_safetensors(path);

    REQUIRE(out.tensors.size() == in.size());
    CHECK(out.metadata.empty());
    for (size_t i = 0; i < in.size(); ++i) {
        CAPTURE(in[i].first);
        const Tensor& a = in[i].second;
        const Tensor& b = out.tensors[i].second;
        CHECK(out.tensors[i].first == in[i].first);
        CHECK(b.device().is_cpu());
        CHECK(b.dtype() == a.dtype());
        CHECK(b.shape() == a.shape());
        CHECK(bytes_of(b) == bytes_of(a));
    }
    CHECK(out.tensors[3].second.ndim() == 0);
    CHECK(dir.entries() == std::vector<std::string>{"weights.safetensors"});
}

TEST_CASE("safetensors: a non-contiguous tensor is saved in C order of its own shape") {
    TempDir dir;
    std::string path = dir.file("t.safetensors");
    Tensor base = ops::reshape(ops::arange(6, DType::F32), {2, 3});
    Tensor tr = ops::transpose(base, 0, 1);  // [3, 2], a strided view
    REQUIRE_FALSE(tr.is_contiguous());
    save_safetensors(path, {{"t", tr}});
    SafetensorsFile out = load_safetensors(path);
    REQUIRE(out.tensors.size() == 1);
    CHECK(out.tensors[0].second.shape() == Shape{3, 2});
    CHECK(out.tensors[0].second.to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("safetensors: metadata round-trips, including quotes, backslashes and unicode") {
    TempDir dir;
    std::string path = dir.file("m.safetensors");
    std::map<std::string, std::string> meta = {
        {"config", R"({"model_type": "SongUNet", "note": "say \"hi\" \\ σ_data=0.5 ✓", "channel_mult": [2, 2, 2]})"},
        {"ключ", "значение\nwith a newline\ttab"},
        {"empty", ""},
    };
    save_safetensors(path, sample_tensors(), meta);
    SafetensorsFile out = load_safetensors(path);
    CHECK(out.metadata == meta);
    CHECK(out.tensors.size() == 5);
}

TEST_CASE("safetensors: the header is space-padded to a multiple of 8 bytes") {
    TempDir dir;
    // Names of lengths 1..9 move the header length through every remainder mod 8.
    for (int len = 1; len <= 9; ++len) {
        std::string path = dir.file("p.safetensors");
        Tensor t = from_bits<uint32_t>({0x3f800000u}, {1}, DType::F32);
        save_safetensors(path, {{std::string(len, 'x'), t}});
        std::string bytes = read_bytes(path);
        REQUIRE(bytes.size() >= 8);
        uint64_t n = 0;
        std::memcpy(&n, bytes.data(), 8);
        CAPTURE(len);
        CHECK(n % 8 == 0);
        REQUIRE(bytes.size() == 8 + n + 4);
        std::string header = bytes.substr(8, n);
        size_t close = header.rfind('}');
        CHECK(n - (close + 1) < 8);
        CHECK(header.find_first_not_of(' ', close + 1) == std::string::npos);
        CHECK(load_safetensors(path).tensors[0].first == std::string(len, 'x'));
    }
}

TEST_CASE("safetensors: a tiny file matches the hand-computed bytes") {
    TempDir dir;
    std::string path = dir.file("tiny.safetensors");
    Tensor a = from_bits<uint32_t>({0x3f800000u, 0xc0000000u}, {2}, DType::F32);  // 1.0, -2.0
    save_safetensors(path, {{"a", a}});
    // 54 bytes of JSON, padded with 2 spaces to 56 = 0x38.
    std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    REQUIRE(header.size() == 54);
    std::string expected = std::string("\x38\0\0\0\0\0\0\0", 8) + header + "  " + std::string("\x00\x00\x80\x3f", 4) +
                           std::string("\x00\x00\x00\xc0", 4);
    CHECK(read_bytes(path) == expected);

    // With metadata, "__metadata__" comes first; a 0-d BF16 tensor has shape [].
    Tensor s = from_bits<uint16_t>({0x4049}, {}, DType::BF16);
    save_safetensors(path, {{"s", s}}, {{"k", "v"}});
    header = R"({"__metadata__":{"k":"v"},"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}})";
    REQUIRE(header.size() == 79);  // padded with 1 space to 80 = 0x50
    expected = std::string("\x50\0\0\0\0\0\0\0", 8) + header + " " + std::string("\x49\x40", 2);
    CHECK(read_bytes(path) == expected);
}

TEST_CASE("safetensors: F16 data is widened exactly to F32") {
    TempDir dir;
    std::string path = dir.file("h.safetensors");
    std::vector<uint16_t> half = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                  0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00};
    std::string data(reinterpret_cast<const char*>(half.data()), half.size() * 2);
    write_bytes(path, craft(R"({"h":{"dtype":"F16","shape":[11],"data_offsets":[0,22]}})", data));
    SafetensorsFile f = load_safetensors(path);
    REQUIRE(f.tensors.size() == 1);
    const Tensor& t = f.tensors[0].second;
    CHECK(t.dtype() == DType::F32);
    CHECK(t.shape() == Shape{11});
    const float* v = t.data<float>();
    CHECK(v[0] == 1.0f);
    CHECK(v[1] == -2.0f);
    CHECK(v[2] == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(v[3] == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(v[4] == std::ldexp(1.0f, -14));  // smallest normal
    CHECK(v[5] == 65504.0f);
    CHECK(v[6] == INFINITY);
    CHECK(v[7] == -INFINITY);
    CHECK((v[8] == 0.0f && std::signbit(v[8])));
    CHECK(v[9] == 0.333251953125f);
    CHECK(std::isnan(v[10]));
}

TEST_CASE("safetensors: tensors come back in the order of their data, whatever the header order") {
    TempDir dir;
    std::string path = dir.file("o.safetensors");
    std::string data(12, '\0');
    // Also: a gap between tensors is accepted, and an empty tensor owns no bytes.
    write_bytes(path, craft(R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                            R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                            R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                            data));
    SafetensorsFile f = load_safetensors(path);
    REQUIRE(f.tensors.size() == 3);
    CHECK(f.tensors[0].first == "a");
    CHECK(f.tensors[1].first == "e");
    CHECK(f.tensors[2].first == "z");
}

TEST_CASE("safetensors: missing, short and oversized files fail cleanly") {
    TempDir dir;
    check_load_fails(dir.file("absent.safetensors"), "no such file");
    check_load_fails(dir.path.string(), "is a directory");

    std::string path = dir.file("short.safetensors");
    write_bytes(path, "");
    check_load_fails(path, "too short");
    write_bytes(path, std::string("\x02\0\0\0\0", 5));
    check_load_fails(path, "too short");

    write_bytes(path, le64(100) + "{}");
    check_load_fails(path, "header length 100 is larger");
    write_bytes(path, le64(~0ull) + "{}");
    check_load_fails(path, "is larger");
}

TEST_CASE("safetensors: a header that is not a JSON object is rejected") {
    TempDir dir;
    check_bad_header(dir, "{not json", "", "not valid JSON");
    check_bad_header(dir, "", "", "not valid JSON");
    check_bad_header(dir, std::string("{\"a\xff\": 1}"), "", "not valid JSON");  // invalid UTF-8
    check_bad_header(dir, "[1, 2]", "", "not a JSON object");
    check_bad_header(dir, "\"text\"", "", "not a JSON object");
    check_bad_header(dir, R"({"__metadata__": [1]})", "", "\"__metadata__\" is not a JSON object");
    check_bad_header(dir, R"({"__metadata__": {"k": 1}})", "", "metadata value for 'k' is not a string");
    check_bad_header(dir, R"({"a": {"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                          R"( "a": {"dtype":"F32","shape":[],"data_offsets":[4,8]}})",
                     std::string(8, '\0'), "names 'a' twice");
}

TEST_CASE("safetensors: every malformed tensor entry is rejected with its reason") {
    TempDir dir;
    std::string d8(8, '\0');
    auto entry = [](const std::string& body) { return "{\"w\": " + body + "}"; };
    check_bad_header(dir, entry("5"), d8, "tensor 'w': entry is not a JSON object");
    check_bad_header(dir, entry(R"({"shape":[2],"data_offsets":[0,8]})"), d8, "tensor 'w': missing \"dtype\"");
    check_bad_header(dir, entry(R"({"dtype":"F32","data_offsets":[0,8]})"), d8, "tensor 'w': missing \"shape\"");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2]})"), d8, "tensor 'w': missing \"data_offsets\"");

    check_bad_header(dir, entry(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})"), d8, "unsupported dtype \"I64\"");
    check_bad_header(dir, entry(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), d8, "unsupported dtype 4");

    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), d8, "negative dimension");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), d8, "not an integer");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), d8, "not an integer");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), d8, "is not a list");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]})"), d8,
                     "too large");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), d8,
                     "too large");
    // A zero dim makes the tensor empty, but its strides still multiply the other dims.
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]})"),
                     d8, "tensor 'w': shape [0,4611686018427387904,4611686018427387904] is too large");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[3037000500,3037000500,0],"data_offsets":[0,0]})"), d8,
                     "too large");

    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), d8,
                     "hold 4 bytes, but shape [2] of F32 needs 8");
    check_bad_header(dir, entry(R"({"dtype":"F64","shape":[2],"data_offsets":[0,8]})"), d8, "needs 16");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), d8, "not a pair");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), d8, "not a pair");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})"), d8, "not a pair");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":"0,8"})"), d8, "not a pair");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), d8, "end before they begin");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), d8,
                     "outside the data section (8 bytes)");
    check_bad_header(dir, entry(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})"), d8, "outside the data section");
}

TEST_CASE("safetensors: overlapping tensors are rejected") {
    TempDir dir;
    std::string d12(12, '\0');
    check_bad_header(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     d12, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    check_bad_header(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})",
                     d12, "overlap");
    // One tensor inside another.
    check_bad_header(dir, R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                     d12, "overlap");
}

TEST_CASE("safetensors: a file cut short at any byte fails cleanly") {
    TempDir dir;
    std::string whole_path = dir.file("whole.safetensors");
    save_safetensors(whole_path, sample_tensors(), {{"config", "{}"}});
    std::string whole = read_bytes(whole_path);
    REQUIRE(load_safetensors(whole_path).tensors.size() == 5);
    // Every strict prefix: inside the length, inside the header, inside each tensor's data.
    std::string path = dir.file("cut.safetensors");
    for (size_t n = 0; n < whole.size(); ++n) {
        CAPTURE(n);
        write_bytes(path, whole.substr(0, n));
        CHECK_THROWS_AS(load_safetensors(path), Error);
    }
}

TEST_CASE("safetensors: a failed save leaves an existing file intact and no temporary file") {
    TempDir dir;
    std::string path = dir.file("keep.safetensors");
    write_bytes(path, "old contents");
    Tensor t = from_bits<uint32_t>({0x3f800000u}, {1}, DType::F32);

    check_save_fails(dir, path, {{"a", t}, {"b", Tensor()}}, {}, "tensor 'b' is undefined");
    check_save_fails(dir, path, {{"a", t}, {"a", t}}, {}, "tensor name 'a' appears twice");
    check_save_fails(dir, path, {{"__metadata__", t}}, {}, "reserved");
    check_save_fails(dir, path, {{"a", t}}, {{"k", std::string("\xff\xfe", 2)}}, "cannot encode the header");
    check_save_fails(dir, path, {{std::string("\xc3", 1), t}}, {}, "cannot encode the header");

    // A failure while the data is being written: this 9-d strided view cannot be packed
    // (stf's strided kernels handle 8 dims), so the error comes after the temporary file exists.
    Tensor nine = Tensor::view_of(t.storage(), {2, 2, 1, 1, 1, 1, 1, 1, 1}, {0, 0, 1, 1, 1, 1, 1, 1, 1}, 0, DType::F32);
    check_save_fails(dir, path, {{"a", t}, {"nine", nine}}, {}, "cannot copy tensor 'nine'");

    // A directory that does not exist: nothing is created.
    std::string nowhere = dir.file("missing_dir/x.safetensors");
    CHECK_THROWS_WITH_AS(save_safetensors(nowhere, {{"a", t}}), doctest::Contains("missing_dir/x.safetensors"), Error);
    CHECK_FALSE(fs::exists(dir.path / "missing_dir"));

    // A successful save replaces the old file whole.
    save_safetensors(path, {{"a", t}});
    CHECK(dir.entries() == std::vector<std::string>{"keep.safetensors"});
    CHECK(load_safetensors(path).tensors[0].second.item() == 1.0);
}

// A FIFO given as --net blocked the open forever.
TEST_CASE("safetensors: a FIFO is refused, not waited on") {
    TempDir dir;
    const std::string fifo = dir.file("pipe.safetensors");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    check_load_fails(fifo, "is not a regular file");
}
