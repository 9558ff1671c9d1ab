// Safetensors reading and writing. See safetensors.h for the format.
#include "nn/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#include "tensor/ops.h"

namespace stf::nn {

// The format is little-endian, and we copy tensor bytes straight between memory and the file.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// ordered_json keeps keys in the order written, so the header lists tensors in the caller's order
// and, when reading, ties between empty tensors at one offset keep the file's order.
using Json = nlohmann::ordered_json;

constexpr const char* kMetadataKey = "__metadata__";
constexpr uint64_t kHeaderAlign = 8;

// ---- dtypes ----------------------------------------------------------------------------------------

// What a file may hold. F16 exists only on disk: it is widened to F32 on load.
enum class FileDType { F16, BF16, F32, F64 };

const char* file_dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "F32";
        case DType::F64: return "F64";
        case DType::BF16: return "BF16";
    }
    return "?";
}

bool parse_file_dtype(const std::string& s, FileDType& out) {
    if (s == "F16") out = FileDType::F16;
    else if (s == "BF16") out = FileDType::BF16;
    else if (s == "F32") out = FileDType::F32;
    else if (s == "F64") out = FileDType::F64;
    else return false;
    return true;
}

uint64_t file_dtype_size(FileDType t) { return t == FileDType::F64 ? 8 : t == FileDType::F32 ? 4 : 2; }

DType loaded_dtype(FileDType t) {
    switch (t) {
        case FileDType::F16: return DType::F32;
        case FileDType::BF16: return DType::BF16;
        case FileDType::F32: return DType::F32;
        case FileDType::F64: return DType::F64;
    }
    return DType::F32;
}

// IEEE half -> float. Every half is exactly representable as a float, so this is exact: normal
// numbers re-bias the exponent (15 -> 127), subnormals are mant * 2^-24, and inf/NaN keep their
// payload in the top mantissa bits.
float half_to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        float mag = std::ldexp(static_cast<float>(mant), -24);
        return sign ? -mag : mag;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

// ---- writing ---------------------------------------------------------------------------------------

[[noreturn]] void save_fail(const std::string& path, const std::string& why) {
    throw Error("save_safetensors: '" + path + "': " + why);
}

// Everything that can be checked without touching the disk, so a bad call leaves no trace.
void check_save_inputs(const std::string& path, const NamedTensors& tensors) {
    std::set<std::string> seen;
    for (const auto& [name, t] : tensors) {
        if (name == kMetadataKey) save_fail(path, "'" + name + "' is reserved for metadata, not a tensor name");
        if (!seen.insert(name).second) save_fail(path, "tensor name '" + name + "' appears twice");
        if (!t.defined()) save_fail(path, "tensor '" + name + "' is undefined");
    }
}

uint64_t tensor_nbytes(const Tensor& t) { return static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype()); }

// The JSON header, padded with spaces to a multiple of 8 bytes so the data section starts aligned.
// Tensors are laid out back to back in the order given.
std::string make_header(const std::string& path, const NamedTensors& tensors,
                        const std::map<std::string, std::string>& metadata) {
    Json header = Json::object();
    if (!metadata.empty()) header[kMetadataKey] = metadata;  // first, as the reference writer does
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        uint64_t end = offset + tensor_nbytes(t);
        header[name] = {{"dtype", file_dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, end}}};
        offset = end;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const Json::exception& e) {  // a name or metadata string that is not valid UTF-8
        save_fail(path, std::string("cannot encode the header: ") + e.what());
    }
    text.append((kHeaderAlign - text.size() % kHeaderAlign) % kHeaderAlign, ' ');
    return text;
}

// A temporary file beside the target that deletes itself unless committed, so any failure, from a
// full disk to an exception while copying a tensor off the GPU, leaves the old file untouched.
class AtomicFile {
public:
    explicit AtomicFile(std::string path)
        : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
        file_ = std::fopen(tmp_.c_str(), "wb");
        if (!file_) fail("cannot create temporary file '" + tmp_ + "'");
    }
    ~AtomicFile() {
        if (file_) std::fclose(file_);
        if (!committed_) std::remove(tmp_.c_str());
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, size_t n) {
        if (n > 0 && std::fwrite(data, 1, n, file_) != n) fail("write failed");
    }
    // Flush to the disk before the rename, so a crash cannot leave a renamed but empty file.
    void commit() {
        if (std::fflush(file_) != 0) fail("flush failed");
        if (::fsync(::fileno(file_)) != 0) fail("fsync failed");
        FILE* f = file_;
        file_ = nullptr;
        if (std::fclose(f) != 0) fail("close failed");
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename '" + tmp_ + "' over it");
        committed_ = true;
    }

private:
    [[noreturn]] void fail(const std::string& what) { save_fail(path_, what + ": " + std::strerror(errno)); }
    std::string path_, tmp_;
    FILE* file_ = nullptr;
    bool committed_ = false;
};

// One tensor's bytes in C order; GPU tensors and strided views are copied to a packed host buffer.
void write_tensor(AtomicFile& file, const std::string& path, const std::string& name, const Tensor& t) {
    if (t.numel() == 0) return;
    Tensor host;
    try {
        host = ops::contiguous(ops::to(t, Device::cpu()));
    } catch (const Error& e) {  // e.g. a CUDA error: say which file and tensor it interrupted
        save_fail(path, "cannot copy tensor '" + name + "' to the host: " + e.what());
    }
    file.write(host.raw_data(), tensor_nbytes(host));
}

// ---- reading ---------------------------------------------------------------------------------------

// A read-only view of the file that refuses every read past its end.
class FileReader {
public:
    explicit FileReader(const std::string& path) : path_(path) {
        std::error_code ec;
        auto status = std::filesystem::status(path, ec);
        if (status.type() == std::filesystem::file_type::not_found) fail("no such file");
        if (ec) fail("cannot open: " + ec.message());
        if (std::filesystem::is_directory(status)) fail("is a directory, not a file");
        // A FIFO or device would block the open or never end: only regular files are read.
        if (!std::filesystem::is_regular_file(status)) fail("is not a regular file (a pipe, socket or device)");
        in_.open(path, std::ios::binary);
        if (!in_) fail(std::string("cannot open: ") + std::strerror(errno));
        in_.seekg(0, std::ios::end);
        size_ = static_cast<uint64_t>(in_.tellg());
    }
    uint64_t size() const { return size_; }

    void read(uint64_t pos, void* dst, uint64_t n, const std::string& what) {
        if (pos > size_ || n > size_ - pos)
            fail(what + " (bytes " + std::to_string(pos) + ".." + std::to_string(pos + n) + ") lies past the end of the " +
                 std::to_string(size_) + "-byte file");
        if (n == 0) return;
        in_.seekg(static_cast<std::streamoff>(pos));
        in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
        if (!in_ || static_cast<uint64_t>(in_.gcount()) != n) fail("read error in " + what);
    }
    [[noreturn]] void fail(const std::string& why) const {
        throw Error("load_safetensors: '" + path_ + "': " + why);
    }

private:
    std::string path_;
    std::ifstream in_;
    uint64_t size_ = 0;
};

// One tensor as the header describes it, already checked against the data section's size.
struct Entry {
    std::string name;
    FileDType dtype;
    Shape shape;
    uint64_t begin, end;  // relative to the data section
};

// Parses the header, rejecting repeated top-level keys: JSON parsers silently keep the last one,
// which would hide a second tensor of the same name.
Json parse_header(FileReader& file, const std::string& text) {
    std::string duplicate;
    std::set<std::string> keys;
    auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
        if (depth == 1 && event == Json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
            duplicate = parsed.get<std::string>();
        return true;
    };
    Json header;
    try {
        header = Json::parse(text, on_event);
    } catch (const Json::exception& e) {
        file.fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) file.fail("header is not a JSON object");
    if (!duplicate.empty()) file.fail("header names '" + duplicate + "' twice");
    return header;
}

std::map<std::string, std::string> parse_metadata(FileReader& file, const Json& j) {
    if (!j.is_object()) file.fail("\"__metadata__\" is not a JSON object");
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : j.items()) {
        if (!value.is_string()) file.fail("metadata value for '" + key + "' is not a string");
        out[key] = value.get<std::string>();
    }
    return out;
}

const Json& field(FileReader& file, const std::string& name, const Json& entry, const char* key) {
    if (!entry.contains(key)) file.fail("tensor '" + name + "': missing \"" + key + "\"");
    return entry.at(key);
}

// A JSON number that is a whole number >= 0 (nlohmann stores those as unsigned).
bool as_count(const Json& j, uint64_t& out) {
    if (!j.is_number_unsigned()) return false;
    out = j.get<uint64_t>();
    return true;
}

// Dims must be whole numbers >= 0 whose product, in bytes, cannot overflow.
Shape parse_shape(FileReader& file, const std::string& name, const Json& j, uint64_t elem_size, uint64_t& nbytes) {
    auto bad = [&](const std::string& why) { file.fail("tensor '" + name + "': shape " + j.dump() + " " + why); };
    if (!j.is_array()) bad("is not a list");
    Shape shape;
    bool empty = false;
    for (const Json& d : j) {
        uint64_t n = 0;
        if (d.is_number_integer() && !d.is_number_unsigned()) bad("has a negative dimension");
        if (!as_count(d, n)) bad("has a dimension that is not an integer");
        if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) bad("has a dimension too large");
        shape.push_back(static_cast<int64_t>(n));
        empty = empty || n == 0;
    }
    // Checked multiplication; a zero dim makes the tensor empty whatever the other dims are, but its
    // strides still multiply the others, so those must fit too (dims of 0 counted as 1).
    uint64_t bytes = elem_size;
    for (int64_t d : shape) {
        if (__builtin_mul_overflow(bytes, std::max<uint64_t>(static_cast<uint64_t>(d), 1), &bytes) ||
            bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            bad("is too large (its size overflows)");
    }
    nbytes = empty ? 0 : bytes;
    return shape;
}

Entry parse_entry(FileReader& file, const std::string& name, const Json& j, uint64_t data_size) {
    if (!j.is_object()) file.fail("tensor '" + name + "': entry is not a JSON object");
    const Json& dtype = field(file, name, j, "dtype");
    const Json& shape = field(file, name, j, "shape");
    const Json& offsets = field(file, name, j, "data_offsets");

    Entry e{name, FileDType::F32, {}, 0, 0};
    if (!dtype.is_string() || !parse_file_dtype(dtype.get<std::string>(), e.dtype))
        file.fail("tensor '" + name + "': unsupported dtype " + dtype.dump() + " (stf reads F32, F64, BF16, F16)");
    uint64_t nbytes = 0;
    e.shape = parse_shape(file, name, shape, file_dtype_size(e.dtype), nbytes);

    std::string where = "tensor '" + name + "': data_offsets " + offsets.dump();
    if (!offsets.is_array() || offsets.size() != 2 || !as_count(offsets[0], e.begin) || !as_count(offsets[1], e.end))
        file.fail(where + " is not a pair of non-negative integers");
    if (e.end < e.begin) file.fail(where + " end before they begin");
    if (e.end > data_size)
        file.fail(where + " reach outside the data section (" + std::to_string(data_size) + " bytes)");
    if (e.end - e.begin != nbytes)
        file.fail(where + " hold " + std::to_string(e.end - e.begin) + " bytes, but shape " + shape.dump() + " of " +
                  dtype.get<std::string>() + " needs " + std::to_string(nbytes));
    return e;
}

// Sorts entries into file order and rejects two tensors claiming the same bytes. Empty tensors own
// no bytes, so they never overlap anything. (Gaps between tensors are allowed.)
void order_and_check_overlap(FileReader& file, std::vector<Entry>& entries) {
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const Entry* last = nullptr;  // the non-empty tensor reaching furthest so far
    for (const Entry& e : entries) {
        if (e.begin == e.end) continue;
        if (last && e.begin < last->end)
            file.fail("tensors '" + last->name + "' [" + std::to_string(last->begin) + ", " + std::to_string(last->end) +
                      ") and '" + e.name + "' [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") overlap");
        last = &e;
    }
}

Tensor read_tensor(FileReader& file, const Entry& e, uint64_t data_start) {
    Tensor t = Tensor::empty(e.shape, loaded_dtype(e.dtype), Device::cpu());
    std::string what = "data of tensor '" + e.name + "'";
    if (e.dtype != FileDType::F16) {
        file.read(data_start + e.begin, t.raw_data(), e.end - e.begin, what);
        return t;
    }
    std::vector<uint16_t> half(static_cast<size_t>(t.numel()));
    file.read(data_start + e.begin, half.data(), e.end - e.begin, what);
    float* out = t.data<float>();
    for (size_t i = 0; i < half.size(); ++i) out[i] = half_to_float(half[i]);
    return t;
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
    check_save_inputs(path, tensors);
    std::string header = make_header(path, tensors, metadata);
    uint64_t header_len = header.size();  // little-endian on disk, and this host is little-endian

    AtomicFile file(path);
    file.write(&header_len, sizeof header_len);
    file.write(header.data(), header.size());
    for (const auto& [name, t] : tensors) write_tensor(file, path, name, t);
    file.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
    FileReader file(path);
    if (file.size() < 8)
        file.fail("file is " + std::to_string(file.size()) + " bytes, too short for the 8-byte header length");
    uint64_t header_len = 0;
    file.read(0, &header_len, 8, "header length");
    if (header_len > file.size() - 8)
        file.fail("header length " + std::to_string(header_len) + " is larger than the " +
                  std::to_string(file.size() - 8) + " bytes after it");
    std::string text(header_len, '\0');
    file.read(8, text.data(), header_len, "header");
    Json header = parse_header(file, text);

    uint64_t data_start = 8 + header_len;
    uint64_t data_size = file.size() - data_start;
    SafetensorsFile out;
    std::vector<Entry> entries;
    for (const auto& [key, value] : header.items()) {
        if (key == kMetadataKey) out.metadata = parse_metadata(file, value);
        else entries.push_back(parse_entry(file, key, value, data_size));
    }
    order_and_check_overlap(file, entries);
    for (const Entry& e : entries) out.tensors.emplace_back(e.name, read_tensor(file, e, data_start));
    return out;
}

}  // namespace stf::nn
