// Command-line flags: --name value or --name=value, --flag for booleans. Every program declares the
// flags it reads; anything else is an error naming the flag, with the usage text.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nn/song_unet.h"

namespace stf::apps {

class Flags {
public:
    // `usage` is printed for --help and after an error.
    Flags(int argc, char** argv, std::string usage);
    bool help() const { return help_; }
    const std::string& usage() const { return usage_; }

    std::string str(const std::string& name, const std::string& fallback);
    int64_t integer(const std::string& name, int64_t fallback);
    double real(const std::string& name, double fallback);
    bool boolean(const std::string& name);  // present or not
    bool on_off(const std::string& name, bool fallback);  // --name on|off
    std::vector<int64_t> int_list(const std::string& name, const std::vector<int64_t>& fallback);  // "1,2,2"
    bool given(const std::string& name) const { return values_.count(name) > 0; }

    // Throws stf::Error when a flag was given that no call above asked for.
    void check_all_used() const;

private:
    std::string usage_;
    bool help_ = false;
    std::map<std::string, std::string> values_;
    std::set<std::string> used_;
};

// The model-size flags every program that builds a SongUNet takes, defaulting to what u holds:
// --cbase (model_channels), --cres (channel_mult), --blocks (num_blocks), --attn (attn_resolutions).
void model_size_flags(Flags& f, nn::SongUNetConfig& u);

// sample's --seeds: ranges and lists of seeds >= 0 ("0-63", "1,5,9-12"); each number whole digits, at
// most max_count seeds in all. Throws stf::Error naming the part it cannot read.
std::vector<int64_t> parse_seeds(const std::string& text, int64_t max_count = 100'000'000);

// A program's main: parses the flags, prints `usage` for --help, runs `body`, and turns any error into
// "NAME: error: MESSAGE" on stderr with exit status 1.
int run_program(const char* name, int argc, char** argv, const char* usage, const std::function<void(Flags&)>& body);

}  // namespace stf::apps
