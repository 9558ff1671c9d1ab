#include "data/image_io.h"

#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "tensor/ops.h"

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace stf::data {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "stf's .npy and image I/O assume a little-endian host");

namespace {

// A CPU, contiguous float32/float64 copy (or t itself when it already is one).
Tensor host_float(const Tensor& t, const char* op) {
    STF_CHECK(t.defined(), op << ": undefined tensor");
    Tensor x = t;
    if (x.dtype() == DType::BF16 && x.device().is_cuda()) x = ops::to(x, DType::F32);
    x = ops::to(x, Device::cpu());
    if (x.dtype() == DType::BF16) x = ops::to(x, DType::F32);
    return ops::contiguous(x);
}

// EDM: (x * 127.5 + 128).clip(0, 255).to(uint8), in float32. Each step is done exactly in double and
// rounded once to float, which gives the float32 result bit for bit whatever the compiler contracts.
inline uint8_t edm_to_u8(float x) {
    float p = static_cast<float>(static_cast<double>(x) * 127.5);
    float s = static_cast<float>(static_cast<double>(p) + 128.0);
    if (!(s >= 0.0f)) return 0;  // negative or NaN
    if (s >= 255.0f) return 255;
    return static_cast<uint8_t>(s);  // truncation toward zero
}

// [N, C, H, W] -> N * H * W * C bytes.
std::vector<uint8_t> nchw_to_u8_nhwc(const Tensor& t, int64_t n, int64_t c, int64_t h, int64_t w) {
    std::vector<uint8_t> out(static_cast<size_t>(n * c * h * w));
    auto fill = [&](auto* src) {
        for (int64_t i = 0; i < n; ++i)
            for (int64_t ch = 0; ch < c; ++ch)
                for (int64_t y = 0; y < h; ++y)
                    for (int64_t x = 0; x < w; ++x)
                        out[static_cast<size_t>(((i * h + y) * w + x) * c + ch)] =
                            edm_to_u8(static_cast<float>(src[((i * c + ch) * h + y) * w + x]));
    };
    if (t.dtype() == DType::F32) fill(t.data<float>());
    else fill(t.data<double>());
    return out;
}

void check_images(const Tensor& images, const char* op) {
    STF_CHECK(images.defined() && images.ndim() == 4,
              op << ": expected images [N, C, H, W], got " << (images.defined() ? describe(images) : "undefined"));
    STF_CHECK(images.size(1) >= 1 && images.size(1) <= 4,
              op << ": images need 1 to 4 channels for PNG, got " << describe(images));
    STF_CHECK(images.size(2) > 0 && images.size(3) > 0, op << ": empty images " << describe(images));
}

std::string temp_name(const std::string& path) {
    static std::atomic<uint64_t> counter{0};
    return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

std::string format_seed(int64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%06lld", static_cast<long long>(v));
    return buf;
}

}  // namespace

void write_file_atomic(const std::string& path, const void* data, size_t size) {
    std::string tmp = temp_name(path);
    FILE* f = std::fopen(tmp.c_str(), "wb");
    STF_CHECK(f != nullptr, "cannot write '" << path << "': " << std::strerror(errno));
    bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
    int err = ok ? 0 : errno;
    if (std::fflush(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (std::fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        std::remove(tmp.c_str());
        throw Error("cannot write '" + path + "': " + std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        err = errno;
        std::remove(tmp.c_str());
        throw Error("cannot rename '" + tmp + "' to '" + path + "': " + std::strerror(err));
    }
}

// ---- PNG -------------------------------------------------------------------------------------------

void write_png(const std::string& path, const uint8_t* hwc, int h, int w, int c) {
    STF_CHECK(h > 0 && w > 0, "write_png: '" << path << "': bad size " << h << "x" << w);
    STF_CHECK(c >= 1 && c <= 4, "write_png: '" << path << "': " << c << " channels (PNG takes 1 to 4)");
    STF_CHECK(hwc != nullptr, "write_png: '" << path << "': no pixels");
    std::vector<uint8_t> bytes;
    auto sink = [](void* ctx, void* data, int size) {
        auto* out = static_cast<std::vector<uint8_t>*>(ctx);
        const auto* p = static_cast<const uint8_t*>(data);
        out->insert(out->end(), p, p + size);
    };
    int ok = stbi_write_png_to_func(sink, &bytes, w, h, c, hwc, w * c);
    STF_CHECK(ok != 0 && !bytes.empty(), "write_png: stb_image_write failed to encode '" << path << "'");
    write_file_atomic(path, bytes.data(), bytes.size());
}

std::vector<uint8_t> to_uint8_nhwc(const Tensor& images) {
    check_images(images, "to_uint8_nhwc");
    Tensor t = host_float(images, "to_uint8_nhwc");
    return nchw_to_u8_nhwc(t, t.size(0), t.size(1), t.size(2), t.size(3));
}

std::vector<uint8_t> to_uint8_hwc(const Tensor& image_chw) {
    STF_CHECK(image_chw.defined() && image_chw.ndim() == 3,
              "to_uint8_hwc: expected an image [C, H, W], got "
                  << (image_chw.defined() ? describe(image_chw) : "undefined"));
    Tensor t = host_float(image_chw, "to_uint8_hwc");
    return nchw_to_u8_nhwc(t, 1, t.size(0), t.size(1), t.size(2));
}

void write_image_grid(const std::string& path, const Tensor& images, int64_t cols) {
    check_images(images, "write_image_grid");
    int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    STF_CHECK(n > 0, "write_image_grid: '" << path << "': no images");
    STF_CHECK(cols >= 0, "write_image_grid: negative column count " << cols);
    if (cols == 0) {
        cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
        while (cols * cols < n) ++cols;
        while (cols > 1 && (cols - 1) * (cols - 1) >= n) --cols;
    }
    cols = std::min(cols, n);
    int64_t rows = (n + cols - 1) / cols;
    STF_CHECK(rows * h <= 65535 && cols * w <= 65535,
              "write_image_grid: a " << rows << "x" << cols << " grid of " << h << "x" << w << " images is too large");
    std::vector<uint8_t> px = to_uint8_nhwc(images);
    int64_t gw = cols * w, gh = rows * h;
    std::vector<uint8_t> grid(static_cast<size_t>(gh * gw * c), 0);
    for (int64_t i = 0; i < n; ++i) {
        int64_t r = i / cols, col = i % cols;
        for (int64_t y = 0; y < h; ++y)
            std::memcpy(grid.data() + ((r * h + y) * gw + col * w) * c, px.data() + ((i * h + y) * w) * c,
                        static_cast<size_t>(w * c));
    }
    write_png(path, grid.data(), static_cast<int>(gh), static_cast<int>(gw), static_cast<int>(c));
}

void write_images_to_dir(const std::string& dir, const Tensor& images, const std::vector<int64_t>& seeds,
                         bool subdirs) {
    check_images(images, "write_images_to_dir");
    int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
    STF_CHECK(static_cast<int64_t>(seeds.size()) == n,
              "write_images_to_dir: " << seeds.size() << " seeds for " << n << " images");
    for (int64_t s : seeds) STF_CHECK(s >= 0, "write_images_to_dir: negative seed " << s);
    std::vector<uint8_t> px = to_uint8_nhwc(images);
    int64_t per = h * w * c;
    for (int64_t i = 0; i < n; ++i) {
        int64_t seed = seeds[static_cast<size_t>(i)];
        fs::path d = subdirs ? fs::path(dir) / format_seed(seed - seed % 1000) : fs::path(dir);
        std::error_code ec;
        fs::create_directories(d, ec);
        STF_CHECK(!ec, "write_images_to_dir: cannot create '" << d.string() << "': " << ec.message());
        write_png((d / (format_seed(seed) + ".png")).string(), px.data() + i * per, static_cast<int>(h),
                  static_cast<int>(w), static_cast<int>(c));
    }
}

// ---- NPY -------------------------------------------------------------------------------------------

void write_npy(const std::string& path, const Tensor& t) {
    std::string out = npy_bytes(t, path);
    write_file_atomic(path, out.data(), out.size());
}

std::string npy_bytes(const Tensor& t, const std::string& path) {
    Tensor x = host_float(t, "write_npy");
    STF_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64,
              "write_npy: '" << path << "': unsupported dtype " << dtype_name(x.dtype()));
    std::ostringstream dict;
    dict << "{'descr': '" << (x.dtype() == DType::F32 ? "<f4" : "<f8") << "', 'fortran_order': False, 'shape': (";
    for (int d = 0; d < x.ndim(); ++d) dict << (d ? ", " : "") << x.size(d);
    if (x.ndim() == 1) dict << ",";
    dict << "), }";
    std::string header = dict.str();
    // Version 1.0 keeps the header length in 2 bytes; 2.0 in 4 (only for enormous shapes).
    bool v2 = header.size() + 1 + 10 > 65535;
    size_t prefix = v2 ? 12 : 10;
    size_t total = prefix + header.size() + 1;
    size_t pad = (64 - total % 64) % 64;
    header.append(pad, ' ');
    header.push_back('\n');
    std::string out = "\x93NUMPY";
    out.push_back(static_cast<char>(v2 ? 2 : 1));
    out.push_back(0);
    uint32_t hlen = static_cast<uint32_t>(header.size());
    for (size_t i = 0; i < (v2 ? 4u : 2u); ++i) out.push_back(static_cast<char>((hlen >> (8 * i)) & 0xff));
    out += header;
    size_t nbytes = static_cast<size_t>(x.numel()) * dtype_size(x.dtype());
    size_t at = out.size();
    out.resize(at + nbytes);
    if (nbytes) std::memcpy(out.data() + at, x.raw_data(), nbytes);
    return out;
}

namespace {

// The text after `'key':` in an NPY header dict, with leading spaces skipped; npos when absent.
size_t npy_value_at(const std::string& h, const std::string& key) {
    for (const std::string& quoted : {"'" + key + "'", "\"" + key + "\""}) {
        size_t at = h.find(quoted);
        if (at == std::string::npos) continue;
        at = h.find_first_not_of(" \t", at + quoted.size());
        if (at == std::string::npos || h[at] != ':') return std::string::npos;
        return h.find_first_not_of(" \t", at + 1);
    }
    return std::string::npos;
}

}  // namespace

Tensor read_npy(const std::string& path) {
    std::error_code ec;
    STF_CHECK(fs::exists(path, ec), "read_npy: '" << path << "' does not exist");
    STF_CHECK(fs::is_regular_file(path, ec), "read_npy: '" << path << "' is not a regular file (a pipe, socket, device "
                                                           << "or folder)");
    std::ifstream in(path, std::ios::binary);
    STF_CHECK(in.good(), "read_npy: cannot open '" << path << "': " << std::strerror(errno));
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_npy(bytes, path);
}

Tensor parse_npy(const std::string& bytes, const std::string& path) {
    STF_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0,
              "read_npy: '" << path << "' is not a .npy file (bad magic)");
    int major = static_cast<uint8_t>(bytes[6]);
    STF_CHECK(major >= 1 && major <= 3, "read_npy: '" << path << "' has unsupported .npy format version " << major << "."
                                                     << int(static_cast<uint8_t>(bytes[7])));
    size_t prefix = major == 1 ? 10 : 12;
    STF_CHECK(bytes.size() >= prefix, "read_npy: '" << path << "' is truncated: header length missing");
    size_t hlen = 0;
    for (size_t i = 0; i < prefix - 8; ++i) hlen |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    STF_CHECK(bytes.size() >= prefix + hlen, "read_npy: '" << path << "' is truncated: header of " << hlen
                                                           << " bytes, file of " << bytes.size());
    std::string h = bytes.substr(prefix, hlen);

    size_t at = npy_value_at(h, "descr");
    STF_CHECK(at != std::string::npos && (h[at] == '\'' || h[at] == '"'),
              "read_npy: '" << path << "' has a malformed header (no descr): " << h);
    size_t end = h.find(h[at], at + 1);
    STF_CHECK(end != std::string::npos, "read_npy: '" << path << "' has a malformed header (descr): " << h);
    std::string descr = h.substr(at + 1, end - at - 1);
    DType dtype;
    if (descr == "<f4") dtype = DType::F32;
    else if (descr == "<f8") dtype = DType::F64;
    else
        throw Error("read_npy: '" + path + "' holds dtype '" + descr + "'; only '<f4' (float32) and '<f8' (float64) " +
                    "are supported");

    at = npy_value_at(h, "fortran_order");
    STF_CHECK(at != std::string::npos, "read_npy: '" << path << "' has a malformed header (no fortran_order): " << h);
    if (h.compare(at, 4, "True") == 0)
        throw Error("read_npy: '" + path + "' is in Fortran order; save it C-ordered (np.ascontiguousarray)");
    STF_CHECK(h.compare(at, 5, "False") == 0,
              "read_npy: '" << path << "' has a malformed header (fortran_order): " << h);

    at = npy_value_at(h, "shape");
    STF_CHECK(at != std::string::npos && h[at] == '(', "read_npy: '" << path << "' has a malformed header (no shape): " << h);
    end = h.find(')', at);
    STF_CHECK(end != std::string::npos, "read_npy: '" << path << "' has a malformed header (shape): " << h);
    Shape shape;
    std::string dims = h.substr(at + 1, end - at - 1);
    size_t pos = 0;
    while (pos < dims.size()) {
        size_t comma = dims.find(',', pos);
        std::string item = dims.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? dims.size() : comma + 1;
        size_t b = item.find_first_not_of(" \tL"), e = item.find_last_not_of(" \tL");
        if (b == std::string::npos) continue;  // the empty item after a trailing comma
        item = item.substr(b, e - b + 1);
        STF_CHECK(item.find_first_not_of("0123456789") == std::string::npos && item.size() <= 15,
                  "read_npy: '" << path << "' has a malformed shape: (" << dims << ")");
        shape.push_back(std::stoll(item));
    }
    // Bounded before multiplying, so the product cannot wrap; a zero dim counts as 1 here because the
    // strides of an empty array still multiply the other dims.
    int64_t numel = 1, extent = 1;
    for (int64_t d : shape) {
        STF_CHECK(std::max<int64_t>(d, 1) <= (int64_t(1) << 40) / extent,
                  "read_npy: '" << path << "' has an absurd shape (" << dims << ")");
        extent *= std::max<int64_t>(d, 1);
        numel *= d;
    }
    size_t need = static_cast<size_t>(numel) * dtype_size(dtype);
    size_t have = bytes.size() - prefix - hlen;
    STF_CHECK(have >= need, "read_npy: '" << path << "' is truncated: shape " << shape_str(shape) << " " << descr
                                          << " needs " << need << " data bytes, file has " << have);
    STF_CHECK(have == need, "read_npy: '" << path << "' has a size mismatch: shape " << shape_str(shape) << " " << descr
                                          << " needs " << need << " data bytes, file has " << have);
    Tensor t = Tensor::empty(shape, dtype, Device::cpu());
    if (need) std::memcpy(t.raw_data(), bytes.data() + prefix + hlen, need);
    return t;
}

}  // namespace stf::data
