// ZIP reading and writing for .npz files: just what numpy writes. A ZIP ends with the "end of central
// directory" record, which locates the central directory: one entry per member with its name,
// compression method, CRC-32, sizes and the offset of its local header, after which its bytes follow.
// ZIP64 moves sizes and offsets that do not fit 32 bits into an "extra field" (id 1) and the directory's
// position into a ZIP64 end record found through a locator just before the classic one.
#include "data/npz.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/image_io.h"

namespace stf::data {

namespace {

constexpr uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50, kEnd = 0x06054b50,
                   kZip64End = 0x06064b50, kZip64Locator = 0x07064b50;

// Little-endian fields of `bytes`, bounds-checked against the file.
struct Reader {
    const std::string& bytes;
    const std::string& path;
    uint64_t u(size_t at, int width) const {
        // at comes from the file (up to 2^64 - 1): compared without adding, so it cannot wrap.
        STF_CHECK(at <= bytes.size() && static_cast<size_t>(width) <= bytes.size() - at,
                  "read_npz: '" << path << "' is truncated (a ZIP record runs past its end)");
        uint64_t v = 0;
        for (int i = 0; i < width; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[at + i])) << (8 * i);
        return v;
    }
};

struct Member {
    std::string name;
    uint64_t method, crc, compressed, size, local_offset;
};

std::vector<Member> central_directory(const Reader& r) {
    const std::string& b = r.bytes;
    STF_CHECK(b.size() >= 22, "read_npz: '" << r.path << "' is not a ZIP/.npz file (too short)");
    // The end record is the last 22 bytes, plus a comment of up to 65535 bytes.
    size_t end = std::string::npos;
    for (size_t at = b.size() - 22;; --at) {
        if (r.u(at, 4) == kEnd) {
            end = at;
            break;
        }
        if (at == 0 || b.size() - at > 22 + 65535) break;
    }
    STF_CHECK(end != std::string::npos, "read_npz: '" << r.path << "' is not a ZIP/.npz file (no end record)");
    uint64_t entries = r.u(end + 10, 2), dir_offset = r.u(end + 16, 4);
    if ((entries == 0xFFFF || dir_offset == 0xFFFFFFFF) && end >= 20 && r.u(end - 20, 4) == kZip64Locator) {
        const uint64_t z = r.u(end - 20 + 8, 8);
        STF_CHECK(r.u(z, 4) == kZip64End, "read_npz: '" << r.path << "' has a bad ZIP64 end record");
        entries = r.u(z + 32, 8);
        dir_offset = r.u(z + 48, 8);
    }
    std::vector<Member> members;
    size_t at = dir_offset;
    for (uint64_t e = 0; e < entries; ++e) {
        STF_CHECK(r.u(at, 4) == kCentralHeader, "read_npz: '" << r.path << "' has a corrupt central directory");
        Member m;
        m.method = r.u(at + 10, 2);
        m.crc = r.u(at + 16, 4);
        m.compressed = r.u(at + 20, 4);
        m.size = r.u(at + 24, 4);
        const size_t name_len = r.u(at + 28, 2), extra_len = r.u(at + 30, 2), comment_len = r.u(at + 32, 2);
        m.local_offset = r.u(at + 42, 4);
        STF_CHECK(at + 46 + name_len <= r.bytes.size(), "read_npz: '" << r.path << "' is truncated");
        m.name = r.bytes.substr(at + 46, name_len);
        // ZIP64: the fields that overflowed, in this order, in extra field 1.
        for (size_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
            const uint64_t id = r.u(x, 2), len = r.u(x + 2, 2);
            if (id == 1) {
                size_t f = x + 4;
                if (m.size == 0xFFFFFFFF) m.size = r.u(f, 8), f += 8;
                if (m.compressed == 0xFFFFFFFF) m.compressed = r.u(f, 8), f += 8;
                if (m.local_offset == 0xFFFFFFFF) m.local_offset = r.u(f, 8);
            }
            x += 4 + len;
        }
        members.push_back(m);
        at += 46 + name_len + extra_len + comment_len;
    }
    return members;
}

std::string member_bytes(const Reader& r, const Member& m) {
    const std::string what = "read_npz: '" + r.path + "' member '" + m.name + "'";
    STF_CHECK(r.u(m.local_offset, 4) == kLocalHeader, what << ": bad local header");
    const uint64_t start = m.local_offset + 30 + r.u(m.local_offset + 26, 2) + r.u(m.local_offset + 28, 2);
    STF_CHECK(start <= r.bytes.size() && m.compressed <= r.bytes.size() - start,
              what << " is truncated: " << m.compressed << " bytes from offset " << start << " in a file of "
                   << r.bytes.size());
    // Deflate expands at most 1032:1, so a larger claimed size is corrupt; checked before allocating it.
    STF_CHECK(m.size <= m.compressed * 1032 + 1024,
              what << " claims " << m.size << " bytes from " << m.compressed << " compressed ones (corrupt)");
    std::string out;
    if (m.method == 0) {
        STF_CHECK(m.compressed == m.size, what << ": stored member with different sizes");
        out = r.bytes.substr(start, m.size);
    } else if (m.method == 8) {  // raw deflate
        out.resize(m.size);
        z_stream z{};
        STF_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, what << ": zlib initialisation failed");
        z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(r.bytes.data() + start));
        z.avail_in = static_cast<uInt>(m.compressed);
        z.next_out = reinterpret_cast<Bytef*>(out.data());
        z.avail_out = static_cast<uInt>(m.size);
        const int rc = inflate(&z, Z_FINISH);
        const uint64_t produced = z.total_out;
        inflateEnd(&z);
        STF_CHECK(rc == Z_STREAM_END && produced == m.size, what << ": corrupt deflate data");
    } else {
        throw Error(what + ": compression method " + std::to_string(m.method) +
                    " is not supported (only stored and deflate, as numpy writes)");
    }
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size()));
    STF_CHECK(crc == m.crc, what << ": CRC-32 mismatch (the file is corrupt)");
    return out;
}

void put(std::string& s, uint64_t v, int width) {
    for (int i = 0; i < width; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

std::map<std::string, Tensor> read_npz(const std::string& path) {
    std::error_code ec;
    STF_CHECK(std::filesystem::exists(path, ec), "read_npz: '" << path << "' does not exist");
    STF_CHECK(std::filesystem::is_regular_file(path, ec), "read_npz: '" << path << "' is not a regular file (a pipe, "
                                                                        << "socket, device or folder)");
    std::ifstream in(path, std::ios::binary);
    STF_CHECK(in.good(), "read_npz: cannot open '" << path << "': " << std::strerror(errno));
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Reader r{bytes, path};
    std::map<std::string, Tensor> arrays;
    for (const Member& m : central_directory(r)) {
        std::string key = m.name;
        if (key.size() > 4 && key.ends_with(".npy")) key.resize(key.size() - 4);
        arrays[key] = parse_npy(member_bytes(r, m), path + ":" + m.name);
    }
    return arrays;
}

void write_npz(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& arrays) {
    std::string out, directory;
    for (const auto& [key, t] : arrays) {
        STF_CHECK(!key.empty() && key.size() < 1000, "write_npz: '" << path << "': bad key '" << key << "'");
        const std::string name = key + ".npy", data = npy_bytes(t, path + ":" + name);
        STF_CHECK(data.size() < 0xFFFFFFFFull && out.size() < 0xFFFFFFFFull,
                  "write_npz: '" << path << "': member '" << name << "' needs ZIP64, which this writer does not write");
        const uint64_t crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(data.data()),
                                   static_cast<uInt>(data.size()));
        const uint64_t offset = out.size();
        // Local header: version 2.0, no flags, stored, no date, CRC and sizes, name, no extra field.
        put(out, kLocalHeader, 4), put(out, 20, 2), put(out, 0, 2), put(out, 0, 2), put(out, 0, 4);
        put(out, crc, 4), put(out, data.size(), 4), put(out, data.size(), 4), put(out, name.size(), 2), put(out, 0, 2);
        out += name;
        out += data;
        put(directory, kCentralHeader, 4), put(directory, 20, 2), put(directory, 20, 2), put(directory, 0, 2);
        put(directory, 0, 2), put(directory, 0, 4), put(directory, crc, 4), put(directory, data.size(), 4);
        put(directory, data.size(), 4), put(directory, name.size(), 2), put(directory, 0, 2), put(directory, 0, 2);
        put(directory, 0, 2), put(directory, 0, 2), put(directory, 0, 4), put(directory, offset, 4);
        directory += name;
    }
    const uint64_t dir_offset = out.size();
    out += directory;
    put(out, kEnd, 4), put(out, 0, 2), put(out, 0, 2), put(out, arrays.size(), 2), put(out, arrays.size(), 2);
    put(out, directory.size(), 4), put(out, dir_offset, 4), put(out, 0, 2);
    write_file_atomic(path, out.data(), out.size());
}

}  // namespace stf::data
