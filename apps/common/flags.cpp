#include "apps/common/flags.h"

#include "train/distributed.h"

#include <cstdio>
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
    return it == values_.end() ? fallback : it->second;
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
        if (pos == v.size()) return x;
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
