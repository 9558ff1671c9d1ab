#include "data/image_dataset.h"

#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "data/image_folder.h"  // the one decoder
#include "data/image_io.h"

namespace stf::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Limits checked before anything is allocated: one file inside a dataset, one image's pixels, all pixels.
constexpr uint64_t kMaxFileBytes = uint64_t(1) << 30;
constexpr int64_t kMaxImageSide = 1 << 15;
constexpr int64_t kMaxTotalPixelBytes = int64_t(1) << 36;  // 64 GiB, as for IDX files
constexpr uint64_t kMaxDeflateRatio = 1032;  // deflate's largest output per input byte (258-byte matches in 2 bits)
// Images read and decoded per pass: bounds the memory held by encoded files to about this many of them.
constexpr int64_t kImagesPerPass = 4096;

std::string lower(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

std::string extension(const std::string& name) {
    std::string base = name.substr(name.find_last_of('/') + 1);
    size_t dot = base.find_last_of('.');
    return dot == std::string::npos ? "" : lower(base.substr(dot));
}

// Where images come from: a ZIP archive or a directory, entries named by their '/'-separated path.
class FileSource {
public:
    virtual ~FileSource() = default;
    const std::string& path() const { return path_; }
    const std::vector<std::string>& names() const { return names_; }
    bool has(const std::string& name) const { return std::binary_search(names_.begin(), names_.end(), name); }
    // Reads the files `which` into out[k]; a file that cannot be read leaves its message in errors[k].
    virtual void read(const std::vector<std::string>& which, std::vector<std::vector<uint8_t>>& out,
                      std::vector<std::string>& errors) = 0;
    std::vector<uint8_t> read_one(const std::string& name) {
        std::vector<std::vector<uint8_t>> out(1);
        std::vector<std::string> errors(1);
        read({name}, out, errors);
        if (!errors[0].empty()) throw Error(errors[0]);
        return std::move(out[0]);
    }

protected:
    std::string path_;
    std::vector<std::string> names_;  // sorted
};

class ZipSource : public FileSource {
public:
    explicit ZipSource(const std::string& path) {
        path_ = path;
        int code = 0;
        za_ = zip_open(path.c_str(), ZIP_RDONLY, &code);
        if (!za_) {
            zip_error_t err;
            zip_error_init_with_code(&err, code);
            std::string why = zip_error_strerror(&err);
            zip_error_fini(&err);
            if (code == ZIP_ER_NOZIP)
                throw Error("ImageDataset::load: '" + path + "' is not a ZIP archive (expected EDM's dataset_tool "
                            "format: a ZIP of PNG files with a dataset.json)");
            throw Error("ImageDataset::load: cannot open ZIP archive '" + path + "': " + why);
        }
        zip_int64_t n = zip_get_num_entries(za_, 0);
        for (zip_int64_t i = 0; i < n; ++i) {
            const char* name = zip_get_name(za_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_GUESS);
            if (!name) continue;
            std::string s = name;
            if (s.empty() || s.back() == '/') continue;  // directory entries
            index_[s] = static_cast<zip_uint64_t>(i);
            names_.push_back(s);
        }
        std::sort(names_.begin(), names_.end());
    }
    ~ZipSource() override {
        if (za_) zip_discard(za_);
    }

    // One handle reads the archive: libzip's handles are not shared between threads, and reading stored
    // (or deflated) entries sequentially is a small part of the time next to decoding them.
    void read(const std::vector<std::string>& which, std::vector<std::vector<uint8_t>>& out,
              std::vector<std::string>& errors) override {
        for (size_t k = 0; k < which.size(); ++k) {
            const std::string& name = which[k];
            zip_uint64_t i = index_.at(name);
            zip_stat_t st;
            zip_stat_init(&st);
            if (zip_stat_index(za_, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
                errors[k] = where(name) + ": cannot read its size: " + zip_strerror(za_);
                continue;
            }
            if (st.size > kMaxFileBytes) {
                errors[k] = where(name) + " claims " + std::to_string(st.size) + " bytes, more than the " +
                            std::to_string(kMaxFileBytes >> 20) + " MiB an image file may have";
                continue;
            }
            if (const std::string bad = impossible_size(st); !bad.empty()) {
                errors[k] = where(name) + bad;
                continue;
            }
            zip_file_t* f = zip_fopen_index(za_, i, 0);
            if (!f) {
                errors[k] = where(name) + ": cannot open it: " + zip_strerror(za_);
                continue;
            }
            out[k].resize(static_cast<size_t>(st.size));
            zip_int64_t got = st.size ? zip_fread(f, out[k].data(), st.size) : 0;
            if (got != static_cast<zip_int64_t>(st.size))
                errors[k] = where(name) + " is truncated or corrupt: " +
                            (got < 0 ? std::string(zip_file_strerror(f))
                                     : "read " + std::to_string(got) + " of " + std::to_string(st.size) + " bytes");
            zip_fclose(f);
        }
    }

private:
    std::string where(const std::string& name) const { return "'" + name + "' in '" + path_ + "'"; }

    // A stored entry holds exactly its size, and deflate expands at most 1032-fold, so a larger claim is a
    // corrupt header; checking it before allocating keeps a 600-byte entry claiming 600 MB from costing them.
    static std::string impossible_size(const zip_stat_t& st) {
        if (!(st.valid & ZIP_STAT_COMP_SIZE) || !(st.valid & ZIP_STAT_COMP_METHOD)) return "";
        const bool stored = st.comp_method == ZIP_CM_STORE, deflated = st.comp_method == ZIP_CM_DEFLATE;
        if (stored && st.size != st.comp_size)
            return " is stored uncompressed in " + std::to_string(st.comp_size) + " bytes but claims " +
                   std::to_string(st.size) + ": the archive is corrupt";
        if (deflated && st.size > st.comp_size * kMaxDeflateRatio + 1024)
            return " claims " + std::to_string(st.size) + " bytes from " + std::to_string(st.comp_size) +
                   " deflated ones, more than deflate can expand (" + std::to_string(kMaxDeflateRatio) +
                   "-fold): the archive is corrupt";
        return "";
    }
    zip_t* za_ = nullptr;
    std::map<std::string, zip_uint64_t> index_;
};

class FolderSource : public FileSource {
public:
    explicit FolderSource(const std::string& dir) {
        path_ = dir;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
             it.increment(ec)) {
            std::error_code ec2;
            if (it->is_regular_file(ec2)) names_.push_back(fs::relative(it->path(), dir, ec2).generic_string());
        }
        STF_CHECK(!ec, "ImageDataset::load: cannot list '" << dir << "': " << ec.message());
        std::sort(names_.begin(), names_.end());
    }

    // Files are independent, so threads read them in parallel (with the decoding that follows).
    void read(const std::vector<std::string>& which, std::vector<std::vector<uint8_t>>& out,
              std::vector<std::string>& errors) override {
        const int64_t n = static_cast<int64_t>(which.size());
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t k = 0; k < n; ++k) {
            const std::string file = (fs::path(path_) / which[k]).string();
            std::ifstream in(file, std::ios::binary | std::ios::ate);
            if (!in) {
                errors[k] = "cannot open '" + file + "'";
                continue;
            }
            std::streamoff size = in.tellg();
            if (size < 0 || static_cast<uint64_t>(size) > kMaxFileBytes) {
                errors[k] = "'" + file + "' has " + std::to_string(size) + " bytes, more than an image file may have";
                continue;
            }
            out[k].resize(static_cast<size_t>(size));
            in.seekg(0);
            if (!in.read(reinterpret_cast<char*>(out[k].data()), size)) errors[k] = "cannot read '" + file + "'";
        }
    }
};

// The shape every image must share, from the first one.
struct ImageShape {
    int64_t h = 0, w = 0, c = 0;
    std::string first;  // the file it was read from
};

std::string describe(int64_t w, int64_t h, int64_t c) {
    return std::to_string(w) + "x" + std::to_string(h) + " with " + std::to_string(c) +
           (c == 1 ? " channel" : " channels");
}

// Checks a PNG's header against the dataset's shape; "" when it fits.
std::string check_png(const std::vector<uint8_t>& bytes, const std::string& where, const ImageShape& shape) {
    static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0)
        return where + " is not a PNG file (no PNG signature)";
    const ImageHeader head = read_image_header(bytes.data(), bytes.size());
    if (!head.ok) return where + " is not a readable PNG: " + head.error;
    if (head.sixteen_bit)
        return where + " has 16 bits per channel; expected 8-bit PNGs (EDM's dataset_tool writes 8-bit L or RGB)";
    const int64_t c = head.channels;
    if (c != 1 && c != 3)
        return where + " has " + std::to_string(c) + " channels" + (c == 4 ? " (RGBA)" : c == 2 ? " (grey + alpha)" : "") +
               "; expected 1 (grey) or 3 (RGB)";
    if (head.width != shape.w || head.height != shape.h || c != shape.c)
        return where + " is " + describe(head.width, head.height, c) + " but '" + shape.first + "' is " +
               describe(shape.w, shape.h, shape.c) + ": every image must have the same size and channels";
    return "";
}

// Decodes a checked PNG into CHW bytes at dst; "" on success.
std::string decode_png(const std::vector<uint8_t>& bytes, const std::string& where, const ImageShape& shape,
                       uint8_t* dst) {
    DecodedImage img;
    try {
        img = decode_image(bytes.data(), bytes.size(), where);
    } catch (const Error& e) {
        return std::string(e.what()) + " (expected a whole PNG)";  // "cannot decode WHERE, a corrupt image: why"
    }
    if (img.width != shape.w || img.height != shape.h || img.channels != shape.c)
        return where + " decodes to " + describe(img.width, img.height, img.channels) + ", not what its header said";
    std::copy(img.chw.begin(), img.chw.end(), dst);
    return "";
}

// dataset.json: {"labels": null} or {"labels": [[name, class], ...]} naming every image once.
std::vector<int> read_labels(FileSource& src, const std::vector<std::string>& images) {
    const std::string where = "'dataset.json' in '" + src.path() + "'";
    std::vector<uint8_t> bytes = src.read_one("dataset.json");
    json j;
    try {
        j = json::parse(bytes.begin(), bytes.end());
    } catch (const json::exception& e) {
        throw Error("ImageDataset::load: " + where + " is not valid JSON: " + e.what());
    }
    STF_CHECK(j.is_object() && j.contains("labels"),
              "ImageDataset::load: " << where << " has no \"labels\" key (expected {\"labels\": [[path, class], ...]} "
                                                 "or {\"labels\": null})");
    const json& list = j["labels"];
    if (list.is_null()) return {};
    STF_CHECK(list.is_array(), "ImageDataset::load: " << where << ": \"labels\" is a " << list.type_name()
                                                      << ", expected a list of [path, class] pairs or null");
    std::map<std::string, int> by_name;
    for (size_t k = 0; k < list.size(); ++k) {
        const json& e = list[k];
        STF_CHECK(e.is_array() && e.size() == 2 && e[0].is_string(),
                  "ImageDataset::load: " << where << ": entry " << k << " is " << e.dump()
                                         << ", expected [path, class]");
        const std::string name = e[0].get<std::string>();
        STF_CHECK(e[1].is_number_integer(),
                  "ImageDataset::load: " << where << ": the label of '" << name << "' is " << e[1].dump()
                                         << "; expected an integer class (label vectors are not supported)");
        const int64_t label = e[1].get<int64_t>();
        STF_CHECK(label >= 0 && label < kMaxClasses, "ImageDataset::load: " << where << ": class " << label << " of '"
                                                                             << name << "' is out of range (expected 0 .. "
                                                                             << kMaxClasses - 1 << ")");
        STF_CHECK(src.has(name) && extension(name) == ".png",
                  "ImageDataset::load: " << where << " labels '" << name << "', which is not a PNG image in '"
                                         << src.path() << "'");
        STF_CHECK(by_name.emplace(name, static_cast<int>(label)).second,
                  "ImageDataset::load: " << where << " labels '" << name << "' twice");
    }
    std::vector<int> labels;
    labels.reserve(images.size());
    for (const std::string& name : images) {
        auto it = by_name.find(name);
        STF_CHECK(it != by_name.end(), "ImageDataset::load: " << where << " has no label for '" << name
                                                              << "' (it must label every image, or be null)");
        labels.push_back(it->second);
    }
    return labels;
}

ImageDataset load_images(FileSource& src, const std::string& kind) {
    const std::string& path = src.path();
    std::vector<std::string> images;
    std::map<std::string, int64_t> others;  // image files of formats other than PNG, by extension
    for (const std::string& name : src.names()) {
        std::string ext = extension(name);
        if (ext == ".png") images.push_back(name);
        else if (ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif" || ext == ".webp" ||
                 ext == ".tif" || ext == ".tiff")
            ++others[ext];
    }
    if (!others.empty()) {
        std::ostringstream s;
        for (auto& [ext, count] : others) s << (s.tellp() ? ", " : "") << count << " " << ext;
        throw Error("ImageDataset::load: " + kind + " '" + path + "' holds " + s.str() +
                    " files; stf reads PNG images only (convert them, e.g. with EDM's dataset_tool.py)");
    }
    STF_CHECK(!images.empty(), "ImageDataset::load: " << kind << " '" << path
                                                      << "' holds no PNG images (expected EDM's dataset_tool layout: "
                                                         "PNG files and a dataset.json)");
    std::vector<int> labels = src.has("dataset.json") ? read_labels(src, images) : std::vector<int>();

    ImageShape shape;
    {
        shape.first = images[0];
        std::vector<uint8_t> first = src.read_one(images[0]);
        const std::string where = "'" + images[0] + "' in '" + path + "'";
        const ImageHeader head = read_image_header(first.data(), first.size());
        STF_CHECK(first.size() >= 8 && head.ok, "ImageDataset::load: " << where << " is not a readable PNG");
        const int64_t w = head.width, h = head.height;
        STF_CHECK(w > 0 && h > 0 && w <= kMaxImageSide && h <= kMaxImageSide,
                  "ImageDataset::load: " << where << " is " << w << "x" << h << ", outside 1 .. " << kMaxImageSide);
        shape.w = w, shape.h = h, shape.c = head.channels;
        std::string bad = check_png(first, where, shape);  // channels and bit depth
        STF_CHECK(bad.empty(), "ImageDataset::load: " << bad);
    }
    const int64_t n = static_cast<int64_t>(images.size()), per = shape.c * shape.h * shape.w;
    STF_CHECK(per <= kMaxTotalPixelBytes / n, "ImageDataset::load: " << kind << " '" << path << "' holds " << n
                                                                     << " images of " << per
                                                                     << " bytes, more than 64 GiB");
    std::vector<uint8_t> pixels(static_cast<size_t>(n * per));
    for (int64_t start = 0; start < n; start += kImagesPerPass) {
        const int64_t count = std::min(kImagesPerPass, n - start);
        std::vector<std::string> which(images.begin() + start, images.begin() + start + count);
        std::vector<std::vector<uint8_t>> bytes(static_cast<size_t>(count));
        std::vector<std::string> errors(static_cast<size_t>(count));
        src.read(which, bytes, errors);
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t k = 0; k < count; ++k) {
            if (!errors[k].empty()) continue;
            const std::string where = "'" + which[k] + "' in '" + path + "'";
            errors[k] = check_png(bytes[k], where, shape);
            if (errors[k].empty()) errors[k] = decode_png(bytes[k], where, shape, pixels.data() + (start + k) * per);
            std::vector<uint8_t>().swap(bytes[k]);
        }
        for (const std::string& e : errors)
            if (!e.empty()) throw Error("ImageDataset::load: " + e);
    }
    std::ostringstream s;
    s << kind << " " << path << (labels.empty() ? " (no labels)" : " + dataset.json");
    return ImageDataset(std::move(pixels), std::move(labels), n, shape.c, shape.h, shape.w, s.str());
}

// ---- writing -----------------------------------------------------------------------------------------

// An 8-bit grey or RGB PNG whose image data is zlib's stored (uncompressed) blocks, as EDM's dataset_tool
// writes them (PIL, compress_level=0): decoding is then a copy. stb_image_write compresses at level 5 at
// least, hence this small encoder.
std::vector<uint8_t> uncompressed_png(const uint8_t* hwc, int64_t h, int64_t w, int64_t c) {
    std::vector<uint8_t> raw;  // each row: filter type 0 (none), then its bytes
    raw.reserve(static_cast<size_t>(h * (1 + w * c)));
    for (int64_t y = 0; y < h; ++y) {
        raw.push_back(0);
        raw.insert(raw.end(), hwc + y * w * c, hwc + (y + 1) * w * c);
    }
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    std::vector<uint8_t> z(zlen);
    STF_CHECK(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 0) == Z_OK,
              "write_image_dataset: zlib failed to store an image");
    z.resize(zlen);

    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    auto put32 = [&](uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) png.push_back(static_cast<uint8_t>(v >> s));
    };
    auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
        put32(static_cast<uint32_t>(data.size()));
        size_t at = png.size();
        png.insert(png.end(), type, type + 4);
        png.insert(png.end(), data.begin(), data.end());
        put32(static_cast<uint32_t>(crc32(0, png.data() + at, static_cast<uInt>(png.size() - at))));
    };
    std::vector<uint8_t> ihdr;
    for (uint32_t v : {static_cast<uint32_t>(w), static_cast<uint32_t>(h)})
        for (int s = 24; s >= 0; s -= 8) ihdr.push_back(static_cast<uint8_t>(v >> s));
    ihdr.insert(ihdr.end(), {8, static_cast<uint8_t>(c == 1 ? 0 : 2), 0, 0, 0});  // 8 bits, grey or RGB
    chunk("IHDR", ihdr);
    chunk("IDAT", z);
    chunk("IEND", {});
    return png;
}

// Stored image k of d as an uncompressed PNG.
std::vector<uint8_t> png_of(const ImageDataset& d, int64_t k) {
    const int64_t h = d.height(), w = d.width(), c = d.channels();
    std::vector<uint8_t> hwc(static_cast<size_t>(h * w * c));
    const uint8_t* chw = d.image(k);
    for (int64_t p = 0; p < h * w; ++p)
        for (int64_t ch = 0; ch < c; ++ch) hwc[p * c + ch] = chw[ch * h * w + p];
    return uncompressed_png(hwc.data(), h, w, c);
}

// A ZIP archive of stored (uncompressed) entries, written by libzip into a temporary file that close()
// renames into place; an archive never closed is discarded.
class ZipWriter {
public:
    explicit ZipWriter(const std::string& path) : path_(path) {
        int code = 0;
        za_ = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
        STF_CHECK(za_ != nullptr, "write_image_dataset: cannot create '" << path << "' (libzip error " << code << ")");
    }
    ~ZipWriter() {
        if (za_) zip_discard(za_);
    }
    ZipWriter(const ZipWriter&) = delete;
    ZipWriter& operator=(const ZipWriter&) = delete;

    void add(const std::string& name, const std::vector<uint8_t>& bytes) {
        // libzip reads the buffer when the archive is closed; it owns (and frees) this malloc'd copy.
        void* copy = std::malloc(bytes.empty() ? 1 : bytes.size());
        STF_CHECK(copy != nullptr, "write_image_dataset: out of memory");
        std::memcpy(copy, bytes.data(), bytes.size());
        zip_source_t* s = zip_source_buffer(za_, copy, bytes.size(), 1);
        if (!s) std::free(copy);
        const zip_int64_t i = s ? zip_file_add(za_, name.c_str(), s, ZIP_FL_ENC_UTF_8) : -1;
        if (i < 0 && s) zip_source_free(s);
        STF_CHECK(i >= 0, "write_image_dataset: cannot add '" << name << "' to '" << path_ << "': " << zip_strerror(za_));
        zip_set_file_compression(za_, static_cast<zip_uint64_t>(i), ZIP_CM_STORE, 0);
    }

    void close() {
        if (zip_close(za_) == 0) {
            za_ = nullptr;
            return;
        }
        throw Error("write_image_dataset: cannot write '" + path_ + "': " + zip_strerror(za_));
    }

private:
    std::string path_;
    zip_t* za_ = nullptr;
};

std::string edm_name(int64_t k) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08lld", static_cast<long long>(k));
    return std::string(buf, 5) + "/img" + buf + ".png";
}

}  // namespace

bool is_zip_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char head[4] = {};
    if (!in.read(head, 4)) return false;
    return head[0] == 'P' && head[1] == 'K' && ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6));
}

bool is_image_folder(const std::string& dir) {
    std::error_code ec;
    if (fs::is_regular_file(fs::path(dir) / "dataset.json", ec)) return true;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (extension(it->path().filename().string()) == ".png") return true;
    return false;
}

ImageDataset load_image_zip(const std::string& path) {
    ZipSource src(path);
    return load_images(src, "ZIP");
}

ImageDataset load_image_folder(const std::string& dir) {
    FolderSource src(dir);
    return load_images(src, "image folder");
}

void write_image_dataset(const std::string& path, const ImageDataset& d) {
    STF_CHECK(d.channels() == 1 || d.channels() == 3,
              "write_image_dataset: '" << path << "': " << d.channels() << " channels (PNG datasets hold 1 or 3)");
    const int64_t n = d.stored_size();
    json labels = nullptr;
    if (d.has_labels()) {
        labels = json::array();
        for (int64_t k = 0; k < n; ++k) labels.push_back({edm_name(k), d.label(k)});
    }
    const std::string meta = json{{"labels", labels}}.dump();
    if (extension(path) == ".zip") {
        if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
        ZipWriter zip(path);
        for (int64_t k = 0; k < n; ++k) zip.add(edm_name(k), png_of(d, k));
        zip.add("dataset.json", std::vector<uint8_t>(meta.begin(), meta.end()));
        zip.close();
        return;
    }
    std::error_code ec;
    STF_CHECK(!fs::exists(path, ec) || (fs::is_directory(path, ec) && fs::is_empty(path, ec)),
              "write_image_dataset: '" << path << "' exists and is not an empty directory");
    for (int64_t k = 0; k < n; ++k) {
        const fs::path file = fs::path(path) / edm_name(k);
        fs::create_directories(file.parent_path());
        const std::vector<uint8_t> png = png_of(d, k);
        write_file_atomic(file.string(), png.data(), png.size());
    }
    write_file_atomic((fs::path(path) / "dataset.json").string(), meta.data(), meta.size());
}

}  // namespace stf::data
