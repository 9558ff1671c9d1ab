#include "apps/common/flags.h"

#include "train/distributed.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "tensor/tensor.h"

namespace stf::apps {

Flags::Flags(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            help_ = true;
            continue;
        }
        STF_CHECK(a.rfind("--", 0) == 0 && a.size() > 2, "unexpected argument '" << a << "' (flags start with --)");
        std::string name = a.substr(2), value = "true";
        size_t eq = name.find('=');
        if (eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
            value = argv[++i];
        }
        STF_CHECK(!values_.count(name), "flag --" << name << " given twice");
        values_[name] = value;
    }
}

std::string Flags::str(const std::string& name, const std::string& fallback) {
    used_.insert(name);
    auto it = values_.find(name);
    if (it == values_.end()) return fallback;
    // `--batch ''` (an unset shell variable) would otherwise quietly take the default.
    STF_CHECK(!it->second.empty(), "--" << name << " was given an empty value");
    return it->second;
}

int64_t Flags::integer(const std::string& name, int64_t fallback) {
    std::string v = str(name, "");
    if (v.empty()) return fallback;
    try {
        size_t pos = 0;
        int64_t x = std::stoll(v, &pos);
        if (pos == v.size()) return x;
    } catch (const std::exception&) {
    }
    throw Error("--" + name + " expects an integer, got '" + v + "'");
}

double Flags::real(const std::string& name, double fallback) {
    std::string v = str(name, "");
    if (v.empty()) return fallback;
    try {
        size_t pos = 0;
        double x = std::stod(v, &pos);
        if (pos == v.size() && !std::isnan(x)) return x;
    } catch (const std::exception&) {
    }
    throw Error("--" + name + " expects a number, got '" + v + "'");
}

bool Flags::boolean(const std::string& name) {
    std::string v = str(name, "false");
    STF_CHECK(v == "true" || v == "false" || v == "1" || v == "0",
              "--" << name << " is a switch (give it alone, or =true / =false), got '" << v << "'");
    return v == "true" || v == "1";
}

bool Flags::on_off(const std::string& name, bool fallback) {
    const std::string v = str(name, fallback ? "on" : "off");
    STF_CHECK(v == "on" || v == "off", "--" << name << " must be on or off, got '" << v << "'");
    return v == "on";
}

std::vector<int64_t> Flags::int_list(const std::string& name, const std::vector<int64_t>& fallback) {
    std::string v = str(name, "");
    if (v.empty()) return fallback;
    std::vector<int64_t> out;
    std::stringstream ss(v);
    std::string item;
    while (std::getline(ss, item, ',')) {
        try {
            size_t pos = 0;
            out.push_back(std::stoll(item, &pos));
            if (pos != item.size()) throw std::invalid_argument(item);
        } catch (const std::exception&) {
            throw Error("--" + name + " expects a comma-separated list of integers, got '" + v + "'");
        }
    }
    return out;
}

void Flags::check_all_used() const {
    for (auto& [name, value] : values_)
        STF_CHECK(used_.count(name), "unknown flag --" << name << "\n\n" << usage_);
}

void model_size_flags(Flags& f, nn::SongUNetConfig& u) {
    u.model_channels = f.integer("cbase", u.model_channels);
    u.channel_mult = f.int_list("cres", u.channel_mult);
    u.num_blocks = f.integer("blocks", u.num_blocks);
    u.attn_resolutions = f.int_list("attn", u.attn_resolutions);
    // Named by flag here; nn::SongUNet checks the same limits for configs read from files.
    const nn::SongUNetLimits lim;
    STF_CHECK(u.model_channels >= 1 && u.model_channels <= lim.max_channels,
              "--cbase must be in 1.." << lim.max_channels << ", got " << u.model_channels);
    STF_CHECK(!u.channel_mult.empty() && static_cast<int64_t>(u.channel_mult.size()) <= lim.max_levels,
              "--cres needs 1.." << lim.max_levels << " multipliers, got " << u.channel_mult.size());
    for (int64_t m : u.channel_mult)
        STF_CHECK(m >= 1 && m <= lim.max_channel_mult, "--cres: each multiplier must be in 1.." << lim.max_channel_mult
                                                                                               << ", got " << m);
    STF_CHECK(u.num_blocks >= 1 && u.num_blocks <= lim.max_blocks,
              "--blocks must be in 1.." << lim.max_blocks << ", got " << u.num_blocks);
    for (int64_t r : u.attn_resolutions)
        STF_CHECK(r >= 0, "--attn: resolutions must be positive (0: no attention), got " << r);
}

std::vector<int64_t> parse_seeds(const std::string& text, int64_t max_count) {
    const std::string usage = " (expected e.g. 0-63 or 1,5,9-12: seeds >= 0)";
    auto number = [&](const std::string& part, const std::string& digits) {
        STF_CHECK(!digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string::npos,
                  "--seeds: cannot read '" << part << "'" << usage);
        return std::stoll(digits);
    };
    std::vector<int64_t> seeds;
    std::stringstream ss(text);
    std::string part;
    while (std::getline(ss, part, ',')) {
        size_t dash = part.find('-');
        int64_t lo = number(part, part.substr(0, dash)), hi = lo;
        if (dash != std::string::npos) hi = number(part, part.substr(dash + 1));
        STF_CHECK(lo <= hi, "--seeds: range " << part << " runs backwards");
        STF_CHECK(hi - lo < max_count - static_cast<int64_t>(seeds.size()),
                  "--seeds '" << text << "' asks for more than " << max_count << " images");
        for (int64_t s = lo; s <= hi; ++s) seeds.push_back(s);
    }
    STF_CHECK(!seeds.empty(), "--seeds: no seeds given" << usage);
    return seeds;
}

int run_program(const char* name, int argc, char** argv, const char* usage, const std::function<void(Flags&)>& body) {
    try {
        Flags flags(argc, argv, usage);
        if (flags.help()) {
            std::fputs(usage, stdout);
            return 0;
        }
        body(flags);
        return 0;
    } catch (const std::exception& e) {
        // In a data-parallel job the other ranks would wait for this one forever: end them all.
        if (stf::train::ProcessGroup* group = stf::train::ProcessGroup::if_created(); group && group->distributed())
            group->abort(std::string(name) + ": error (rank " + std::to_string(group->rank()) + "): " + e.what());
        std::fprintf(stderr, "%s: error: %s\n", name, e.what());
        return 1;
    }
}

}  // namespace stf::apps
