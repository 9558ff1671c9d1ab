// Command-line flags (apps/common/flags.h): values that are empty, half numbers, NaN or out of range are
// errors naming the flag, never defaults or silent garbage.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "apps/common/flags.h"
#include "tests/expect_error.h"

using namespace stf;
using test::error_of;
using test::has;

namespace {

// Flags from a list of arguments (argv[0] is the program).
apps::Flags flags_of(std::vector<std::string> args) {
    static std::vector<std::string> keep;
    keep = std::move(args);
    keep.insert(keep.begin(), "prog");
    static std::vector<char*> argv;
    argv.clear();
    for (auto& a : keep) argv.push_back(a.data());
    return apps::Flags(static_cast<int>(argv.size()), argv.data(), "usage");
}

}  // namespace

TEST_CASE("an empty value is an error naming the flag, not the default") {
    CHECK(has(error_of([] { flags_of({"--batch="}).integer("batch", 512); }), "--batch was given an empty value"));
    CHECK(has(error_of([] { flags_of({"--batch", ""}).integer("batch", 512); }), "--batch"));
    CHECK(has(error_of([] { flags_of({"--lr="}).real("lr", 1e-3); }), "--lr"));
    CHECK(has(error_of([] { flags_of({"--data="}).str("data", "x"); }), "--data"));
    CHECK(flags_of({}).integer("batch", 512) == 512);
    CHECK(flags_of({"--batch=8"}).integer("batch", 512) == 8);
}

TEST_CASE("numbers: trailing junk and NaN are refused") {
    CHECK(has(error_of([] { flags_of({"--batch", "8x"}).integer("batch", 1); }), "expects an integer, got '8x'"));
    CHECK(has(error_of([] { flags_of({"--ema", "nan"}).real("ema", 1); }), "expects a number, got 'nan'"));
    CHECK(has(error_of([] { flags_of({"--cres", "1,2x"}).int_list("cres", {}); }), "--cres"));
    CHECK(flags_of({"--s-max", "inf"}).real("s-max", 1) > 1e308);  // sample's S_max is infinite by default
}

TEST_CASE("model size flags are bounded and name the flag") {
    auto sized = [](std::vector<std::string> args) {
        apps::Flags f = flags_of(std::move(args));
        nn::SongUNetConfig u;
        apps::model_size_flags(f, u);
        return u;
    };
    CHECK(has(error_of([&] { sized({"--cres", "0"}); }), "--cres: each multiplier must be in 1..64, got 0"));
    CHECK(has(error_of([&] { sized({"--cbase", "0"}); }), "--cbase"));
    CHECK(has(error_of([&] { sized({"--blocks", "10000000"}); }), "--blocks must be in 1..64"));
    CHECK(has(error_of([&] { sized({"--attn", "-1"}); }), "--attn"));
    CHECK(sized({"--attn", "0"}).attn_resolutions == std::vector<int64_t>{0});  // no attention
    CHECK(sized({"--cres", "1,2", "--blocks", "2"}).channel_mult == std::vector<int64_t>{1, 2});
}

TEST_CASE("--seeds: ranges and lists of whole numbers, bounded, without overflow") {
    CHECK(apps::parse_seeds("0-3,7") == std::vector<int64_t>{0, 1, 2, 3, 7});
    CHECK(has(error_of([] { apps::parse_seeds("0-3x"); }), "cannot read '0-3x'"));
    CHECK(has(error_of([] { apps::parse_seeds("-5"); }), "cannot read '-5'"));
    CHECK(has(error_of([] { apps::parse_seeds("5-"); }), "cannot read"));
    CHECK(has(error_of([] { apps::parse_seeds(""); }), "no seeds"));
    CHECK(has(error_of([] { apps::parse_seeds("3-1"); }), "runs backwards"));
    // The loop ran past INT64_MAX here, and 0-10^17 would allocate 800 PB of seeds.
    CHECK(has(error_of([] { apps::parse_seeds("9223372036854775806-9223372036854775807"); }), "cannot read"));
    CHECK(has(error_of([] { apps::parse_seeds("0-99999999999999999"); }), "more than 100000000 images"));
    CHECK(has(error_of([] { apps::parse_seeds("0-9,10-19", 15); }), "more than 15"));
    CHECK(apps::parse_seeds("0-14", 15).size() == 15);
}
