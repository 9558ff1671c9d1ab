#include "data/dataset.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "cuda/philox.h"
#include "data/image_dataset.h"
#include "tensor/ops.h"

namespace stf::data {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kCifarRecord = 1 + 3 * 32 * 32;
constexpr int kCifarBatches = 5;

std::string hex32(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", v);
    return buf;
}

uint32_t be32(const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// A file read through zlib: gzread inflates gzip files and passes any other file through unchanged.
class ZFile {
public:
    explicit ZFile(const std::string& path) : path_(path) {
        f_ = gzopen(path.c_str(), "rb");
        STF_CHECK(f_ != nullptr, "ImageDataset::load: cannot open '" << path << "': " << std::strerror(errno));
        gzbuffer(f_, 1 << 18);
    }
    ~ZFile() {
        if (f_) gzclose(f_);
    }
    ZFile(const ZFile&) = delete;
    ZFile& operator=(const ZFile&) = delete;

    // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
    int64_t read_some(uint8_t* dst, int64_t n) {
        int64_t got = 0;
        while (got < n) {
            unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - got, int64_t(1) << 30));
            int r = gzread(f_, dst + got, chunk);
            if (r < 0) {
                int code = 0;
                const char* msg = gzerror(f_, &code);
                throw Error("ImageDataset::load: '" + path_ + "' is truncated or corrupt: " +
                            (msg ? msg : "unknown zlib error"));
            }
            if (r == 0) break;
            got += r;
        }
        return got;
    }

    void read_exact(uint8_t* dst, int64_t n, const std::string& what) {
        int64_t got = read_some(dst, n);
        STF_CHECK(got == n, "ImageDataset::load: '" << path_ << "' is truncated: expected " << n << " bytes of " << what
                                                     << ", found " << got);
    }

    // Reads n bytes into a vector that grows as data arrives, so a malformed header claiming a huge size
    // fails as "truncated" instead of allocating it all first.
    std::vector<uint8_t> read_vector(int64_t n, const std::string& what) {
        std::vector<uint8_t> out;
        const int64_t step = int64_t(64) << 20;
        int64_t got = 0;
        while (got < n) {
            int64_t want = std::min(step, n - got);
            out.resize(static_cast<size_t>(got + want));
            int64_t r = read_some(out.data() + got, want);
            got += r;
            if (r < want) break;
        }
        STF_CHECK(got == n, "ImageDataset::load: '" << path_ << "' is truncated: expected " << n << " bytes of " << what
                                                     << ", found " << got);
        return out;
    }

    std::vector<uint8_t> read_all() {
        std::vector<uint8_t> out;
        const int64_t step = int64_t(16) << 20;
        int64_t got = 0;
        for (;;) {
            out.resize(static_cast<size_t>(got + step));
            int64_t r = read_some(out.data() + got, step);
            got += r;
            if (r < step) break;
        }
        out.resize(static_cast<size_t>(got));
        return out;
    }

    void expect_end() {
        uint8_t extra[1];
        int64_t r = read_some(extra, 1);
        STF_CHECK(r == 0, "ImageDataset::load: '" << path_ << "' has a size mismatch: data continues past the end "
                                                  << "its header describes");
    }

private:
    std::string path_;
    gzFile f_ = nullptr;
};

struct Idx {
    std::vector<int64_t> dims;
    std::vector<uint8_t> data;
};

// Reads an IDX file of unsigned bytes with `ndims` dimensions (magic 0x000008nn).
Idx read_idx(const std::string& path, int ndims, const char* kind) {
    ZFile f(path);
    uint8_t head[4];
    int64_t got = f.read_some(head, 4);
    STF_CHECK(got == 4, "ImageDataset::load: '" << path << "' is truncated: " << got << " bytes, too short for an IDX "
                                                << "header");
    uint32_t magic = be32(head);
    uint32_t want = 0x00000800u | uint32_t(ndims);
    STF_CHECK(magic == want, "ImageDataset::load: '" << path << "' has bad magic " << hex32(magic) << " (expected "
                                                     << hex32(want) << " for IDX uint8 " << kind << ")");
    Idx idx;
    std::vector<uint8_t> dims(4 * ndims);
    f.read_exact(dims.data(), 4 * ndims, "IDX dimensions");
    int64_t total = 1;
    for (int d = 0; d < ndims; ++d) {
        int64_t v = be32(&dims[4 * d]);
        STF_CHECK(v > 0 && v < (int64_t(1) << 31),
                  "ImageDataset::load: '" << path << "' is malformed: dimension " << d << " is " << v);
        idx.dims.push_back(v);
        // Checked before it can wrap: 256 x 2^28 x 2^28 is 2^64, which wraps to 0 bytes to read.
        STF_CHECK(v <= (int64_t(1) << 36) / total, "ImageDataset::load: '" << path << "' is malformed: dimensions "
                                                                            << "describe more than 64 GiB");
        total *= v;
    }
    idx.data = f.read_vector(total, kind);
    f.expect_end();
    return idx;
}

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower_case(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

// The labels file beside an IDX images file, or "" when there is none.
std::string idx_labels_path(const fs::path& images) {
    std::string name = images.filename().string();
    std::vector<std::string> candidates;
    for (auto [from, to] : {std::pair<std::string, std::string>{"images-idx3", "labels-idx1"},
                            std::pair<std::string, std::string>{"images.idx3", "labels.idx1"}}) {
        size_t at = name.find(from);
        if (at == std::string::npos) continue;
        std::string base = name;
        base.replace(at, from.size(), to);
        if (ends_with(base, ".gz")) base.resize(base.size() - 3);
        candidates.push_back(base + ".gz");
        candidates.push_back(base);
    }
    // Prefer the same compression as the images file.
    if (!ends_with(name, ".gz"))
        for (size_t i = 0; i + 1 < candidates.size(); i += 2) std::swap(candidates[i], candidates[i + 1]);
    for (const auto& c : candidates) {
        fs::path p = images.parent_path() / c;
        if (is_file(p)) return p.string();
    }
    return "";
}

ImageDataset load_idx(const std::string& path) {
    Idx images = read_idx(path, 3, "images");
    int64_t n = images.dims[0], h = images.dims[1], w = images.dims[2];
    std::vector<int> labels;
    std::string labels_path = idx_labels_path(path);
    if (!labels_path.empty()) {
        Idx lab = read_idx(labels_path, 1, "labels");
        STF_CHECK(lab.dims[0] == n, "ImageDataset::load: '" << labels_path << "' holds " << lab.dims[0]
                                                            << " labels but '" << path << "' holds " << n << " images");
        labels.assign(lab.data.begin(), lab.data.end());
    }
    std::ostringstream src;
    src << "IDX " << path << (labels_path.empty() ? " (no labels file)" : " + " + labels_path);
    return ImageDataset(std::move(images.data), std::move(labels), n, 1, h, w, src.str());
}

// One CIFAR-10 batch file: records of a label byte then 3x32x32 bytes CHW.
void read_cifar_file(const std::string& path, std::vector<uint8_t>& pixels, std::vector<int>& labels) {
    ZFile f(path);
    std::vector<uint8_t> bytes = f.read_all();
    int64_t size = static_cast<int64_t>(bytes.size());
    STF_CHECK(size > 0 && size % kCifarRecord == 0,
              "ImageDataset::load: '" << path << "' has a size mismatch: " << size << " bytes is not a whole number of "
                                      << kCifarRecord << "-byte CIFAR-10 records (1 label byte + 3x32x32 pixels)");
    int64_t records = size / kCifarRecord;
    size_t base = pixels.size();
    pixels.resize(base + static_cast<size_t>(records * (kCifarRecord - 1)));
    for (int64_t r = 0; r < records; ++r) {
        const uint8_t* rec = bytes.data() + r * kCifarRecord;
        STF_CHECK(rec[0] < 10, "ImageDataset::load: '" << path << "' is malformed: record " << r << " has label "
                                                       << int(rec[0]) << " (CIFAR-10 labels are 0..9)");
        labels.push_back(rec[0]);
        std::memcpy(pixels.data() + base + r * (kCifarRecord - 1), rec + 1, kCifarRecord - 1);
    }
}

ImageDataset load_cifar_dir(const fs::path& dir) {
    std::vector<uint8_t> pixels;
    std::vector<int> labels;
    std::vector<std::string> missing;
    for (int b = 1; b <= kCifarBatches; ++b) {
        fs::path p = dir / ("data_batch_" + std::to_string(b) + ".bin");
        if (!is_file(p)) missing.push_back(p.filename().string());
    }
    if (!missing.empty()) {
        std::string list;
        for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
        throw Error("ImageDataset::load: CIFAR-10 directory '" + dir.string() + "' is missing " + list +
                    " (expected data_batch_1.bin .. data_batch_5.bin)");
    }
    for (int b = 1; b <= kCifarBatches; ++b)
        read_cifar_file((dir / ("data_batch_" + std::to_string(b) + ".bin")).string(), pixels, labels);
    int64_t n = static_cast<int64_t>(labels.size());
    return ImageDataset(std::move(pixels), std::move(labels), n, 3, 32, 32, "CIFAR-10 " + dir.string());
}

ImageDataset load_cifar_file(const std::string& path) {
    std::vector<uint8_t> pixels;
    std::vector<int> labels;
    read_cifar_file(path, pixels, labels);
    int64_t n = static_cast<int64_t>(labels.size());
    return ImageDataset(std::move(pixels), std::move(labels), n, 3, 32, 32, "CIFAR-10 " + path);
}

// The IDX image file a directory holds, "" when none: training images first.
std::string find_idx_images(const fs::path& dir) {
    for (const char* name : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "train-images.idx3-ubyte",
                             "train-images.idx3-ubyte.gz"})
        if (is_file(dir / name)) return (dir / name).string();
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        if ((name.find("images-idx3-ubyte") != std::string::npos || name.find("images.idx3-ubyte") != std::string::npos) &&
            is_file(e.path()))
            found.push_back(e.path().string());
    }
    if (found.empty()) return "";
    std::sort(found.begin(), found.end());
    for (const auto& f : found)
        if (fs::path(f).filename().string().find("train") != std::string::npos) return f;
    return found.front();
}

// Reads the first 4 bytes (inflated when gzipped); 0 when the file is shorter.
uint32_t peek_magic(const std::string& path) {
    ZFile f(path);
    uint8_t head[4];
    if (f.read_some(head, 4) != 4) return 0;
    return be32(head);
}

ImageDataset pad_images(ImageDataset d, int64_t pad_to) {
    if (pad_to <= 0 || (d.height() >= pad_to && d.width() >= pad_to)) return d;
    int64_t H = std::max(d.height(), pad_to), W = std::max(d.width(), pad_to);
    int64_t top = (H - d.height()) / 2, left = (W - d.width()) / 2;
    int64_t n = d.size(), c = d.channels(), h = d.height(), w = d.width();
    std::vector<uint8_t> out(static_cast<size_t>(checked_mul(n * c, checked_mul(H, W, "padded image size"),
                                                             "ImageDataset::load: padded pixel bytes")),
                             0);
    const uint8_t* src = d.pixels().data();
    for (int64_t i = 0; i < n * c; ++i)
        for (int64_t y = 0; y < h; ++y)
            std::memcpy(out.data() + (i * H + y + top) * W + left, src + (i * h + y) * w, static_cast<size_t>(w));
    std::ostringstream src_desc;
    src_desc << d.source() << ", padded " << h << "x" << w << " -> " << H << "x" << W;
    std::vector<int> labels = d.labels();
    return ImageDataset(std::move(out), std::move(labels), n, c, H, W, src_desc.str());
}

}  // namespace

ImageDataset::ImageDataset(std::vector<uint8_t> pixels, std::vector<int> labels, int64_t n, int64_t channels,
                           int64_t height, int64_t width, std::string source)
    : pixels_(std::move(pixels)), labels_(std::move(labels)), n_(n), c_(channels), h_(height), w_(width),
      source_(std::move(source)) {
    STF_CHECK(n >= 0 && channels > 0 && height > 0 && width > 0,
              "ImageDataset: bad shape [" << n << ", " << channels << ", " << height << ", " << width << "]");
    const int64_t bytes = checked_mul(checked_mul(n, channels, "ImageDataset: image count x channels"),
                                      checked_mul(height, width, "ImageDataset: height x width"),
                                      "ImageDataset: pixel bytes");
    STF_CHECK(static_cast<int64_t>(pixels_.size()) == bytes,
              "ImageDataset: " << pixels_.size() << " pixel bytes for shape [" << n << ", " << channels << ", " << height
                               << ", " << width << "]");
    STF_CHECK(labels_.empty() || static_cast<int64_t>(labels_.size()) == n,
              "ImageDataset: " << labels_.size() << " labels for " << n << " images");
    for (int l : labels_) {
        STF_CHECK(l >= 0, "ImageDataset: negative label " << l);
        num_classes_ = std::max(num_classes_, l + 1);
    }
}

ImageDataset ImageDataset::load(const std::string& path, int64_t pad_to, int64_t max_images) {
    STF_CHECK(!path.empty(), "ImageDataset::load: empty dataset path");
    STF_CHECK(max_images >= 0, "ImageDataset::load: max_images must be >= 0 (0: all), got " << max_images);
    STF_CHECK(pad_to >= 0, "ImageDataset::load: pad_to must be >= 0 (0: no padding), got " << pad_to);
    fs::path p(path);
    std::error_code ec;
    STF_CHECK(fs::exists(p, ec), "ImageDataset::load: '" << path << "' does not exist");
    ImageDataset d;
    if (fs::is_directory(p, ec)) {
        std::string idx;
        if (is_file(p / "data_batch_1.bin")) {
            d = load_cifar_dir(p);
        } else if (is_file(p / "cifar-10-batches-bin" / "data_batch_1.bin")) {
            d = load_cifar_dir(p / "cifar-10-batches-bin");
        } else if (!(idx = find_idx_images(p)).empty()) {
            d = load_idx(idx);
        } else if (is_image_folder(path)) {
            d = load_image_folder(path);
        } else {
            throw Error("ImageDataset::load: no dataset found in directory '" + path +
                        "': looked for CIFAR-10 binary batches (data_batch_1.bin .. data_batch_5.bin, there or in "
                        "cifar-10-batches-bin/), IDX image files (train-images-idx3-ubyte[.gz] or "
                        "*-images-idx3-ubyte[.gz]) and PNG images with a dataset.json (EDM's dataset_tool layout)");
        }
    } else {
        // A FIFO or device would block the read or never end: only regular files are read.
        STF_CHECK(is_file(p), "ImageDataset::load: '" << path << "' is not a regular file (a pipe, socket or device)");
        std::string name = p.filename().string();
        uint32_t magic = 0;
        if (is_zip_file(path) || ends_with(lower_case(name), ".zip")) {
            d = load_image_zip(path);  // reports "not a ZIP archive" with the file name
        } else if ((magic = peek_magic(path)) == 0x00000803u || name.find("idx3") != std::string::npos) {
            d = load_idx(path);  // reports bad magic and truncation with the file name
        } else if (ends_with(name, ".bin") || ends_with(name, ".bin.gz")) {
            d = load_cifar_file(path);
        } else {
            throw Error("ImageDataset::load: '" + path + "' is neither an IDX image file (magic " + hex32(magic) +
                        ", expected 0x00000803), a CIFAR-10 batch (*.bin) nor a ZIP archive of PNG images");
        }
    }
    STF_CHECK(d.size() > 0, "ImageDataset::load: '" << path << "' holds no images");
    if (max_images > 0 && max_images < d.size()) d = d.subset(max_images);  // before padding: it multiplies bytes
    d = pad_images(std::move(d), pad_to);
    std::ostringstream s;
    s << d.source_ << ": " << d.n_ << " x " << d.c_ << "x" << d.h_ << "x" << d.w_;
    d.source_ = s.str();
    return d;
}

std::string ImageDataset::default_fashion_mnist_path() { return "/usr/share/datasets/fashion-mnist"; }

std::string ImageDataset::test_split_path(const std::string& path) {
    std::error_code ec;
    fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
    for (const char* name : {"t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte.gz",
                             "t10k-images.idx3-ubyte", "test_batch.bin", "cifar-10-batches-bin/test_batch.bin"})
        if (is_file(dir / name)) return (dir / name).string();
    return "";
}

std::vector<int> load_labels(const std::string& path) {
    std::error_code ec;
    STF_CHECK(fs::exists(path, ec), "load_labels: '" << path << "' does not exist");
    STF_CHECK(is_file(path), "load_labels: '" << path << "' is not a regular file (a pipe, socket or device)");
    if (peek_magic(path) == 0x00000801u || path.find("idx1") != std::string::npos) {
        Idx idx = read_idx(path, 1, "labels");  // reports bad magic and truncation with the file name
        return std::vector<int>(idx.data.begin(), idx.data.end());
    }
    STF_CHECK(ends_with(path, ".bin") || ends_with(path, ".bin.gz"),
              "load_labels: '" << path << "' is neither an IDX1 label file (magic " << hex32(peek_magic(path))
                               << ", expected 0x00000801) nor a CIFAR-10 batch (*.bin)");
    std::vector<uint8_t> pixels;
    std::vector<int> labels;
    read_cifar_file(path, pixels, labels);
    return labels;
}

const uint8_t* ImageDataset::image(int64_t i) const {
    STF_CHECK(i >= 0 && i < n_, "ImageDataset::image: index " << i << " out of range for " << n_ << " images");
    return pixels_.data() + i * image_bytes();
}

int ImageDataset::label(int64_t i) const {
    STF_CHECK(i >= 0 && i < size(), "ImageDataset::label: index " << i << " out of range for " << size() << " images");
    return labels_.empty() ? 0 : labels_[static_cast<size_t>(i % n_)];
}

Tensor ImageDataset::batch(const std::vector<int64_t>& indices, Device device) const {
    int64_t b = static_cast<int64_t>(indices.size());
    for (int64_t i : indices)
        STF_CHECK(i >= 0 && i < size(), "ImageDataset::batch: index " << i << " out of range for " << size() << " images");
    // x / 127.5 - 1 in float32, as EDM computes it.
    float lut[256];
    for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v) / 127.5f - 1.0f;
    Tensor out = Tensor::empty({b, c_, h_, w_}, DType::F32, Device::cpu());
    float* dst = out.data<float>();
    int64_t per = image_bytes();
    for (int64_t k = 0; k < b; ++k) {
        const int64_t i = indices[static_cast<size_t>(k)];
        const uint8_t* src = pixels_.data() + (i % n_) * per;
        float* d = dst + k * per;
        if (i < n_) {
            for (int64_t j = 0; j < per; ++j) d[j] = lut[src[j]];
        } else {  // mirrored: column x takes column w - 1 - x
            for (int64_t row = 0; row < c_ * h_; ++row)
                for (int64_t x = 0; x < w_; ++x) d[row * w_ + x] = lut[src[row * w_ + w_ - 1 - x]];
        }
    }
    return ops::to(out, device);
}

Tensor ImageDataset::label_batch(const std::vector<int64_t>& indices, int64_t label_dim, Device device) const {
    STF_CHECK(label_dim > 0, "ImageDataset::label_batch: label_dim must be positive, got " << label_dim);
    int64_t b = static_cast<int64_t>(indices.size());
    Tensor out = Tensor::empty({b, label_dim}, DType::F32, Device::cpu());
    float* dst = out.data<float>();
    std::fill(dst, dst + b * label_dim, 0.0f);
    for (int64_t k = 0; k < b; ++k) {
        int64_t i = indices[static_cast<size_t>(k)];
        STF_CHECK(i >= 0 && i < size(), "ImageDataset::label_batch: index " << i << " out of range for " << size()
                                                                            << " images");
        if (labels_.empty()) continue;
        int l = label(i);
        STF_CHECK(l < label_dim, "ImageDataset::label_batch: label " << l << " of image " << i << " does not fit "
                                                                     << "label_dim " << label_dim);
        dst[k * label_dim + l] = 1.0f;
    }
    return ops::to(out, device);
}

ImageDataset ImageDataset::subset(int64_t max_images) const {
    STF_CHECK(max_images >= 0, "ImageDataset::subset: negative count " << max_images);
    int64_t n = std::min(max_images, n_);
    std::vector<uint8_t> pixels(pixels_.begin(), pixels_.begin() + n * image_bytes());
    std::vector<int> labels;
    if (!labels_.empty()) labels.assign(labels_.begin(), labels_.begin() + n);
    std::ostringstream s;
    s << source_ << " (first " << n << ")";
    ImageDataset d(std::move(pixels), std::move(labels), n, c_, h_, w_, s.str());
    return d;
}

}  // namespace stf::data
