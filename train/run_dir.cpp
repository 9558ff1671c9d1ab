#include "train/run_dir.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>

namespace stf::train {

namespace fs = std::filesystem;

std::string dataset_name(const std::string& data_path) {
    fs::path p = fs::path(data_path).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();  // a trailing separator
    return p.stem().string();
}

std::string run_description(const TrainOptions& o, int ranks) {
    const std::string arch = o.net.unet.embedding_type == "fourier" ? "ncsnpp" : "ddpmpp";
    std::string desc = dataset_name(o.data) + "-" + (o.cond ? "cond" : "uncond") + "-" + arch + "-" + o.net.precond +
                       "-gpus" + std::to_string(ranks) + "-batch" + std::to_string(o.batch) + "-" + o.precision;
    if (!o.desc.empty()) desc += "-" + o.desc;
    return desc;
}

int next_run_id(const std::string& outdir) {
    int next = 0;
    std::error_code ec;
    if (!fs::is_directory(outdir, ec)) return 0;
    static const std::regex leading_digits(R"(^(\d+))");
    for (const auto& e : fs::directory_iterator(outdir, ec)) {
        std::smatch m;
        const std::string name = e.path().filename().string();
        if (e.is_directory(ec) && std::regex_search(name, m, leading_digits) && m[1].length() < 10)
            next = std::max(next, std::stoi(m[1]) + 1);
    }
    return next;
}

std::string newest_training_state(const std::string& dir) {
    // KIMG as train/training_state.h names it: whole (000123) or, with ticks under 1 kimg, 000000.080.
    static const std::regex state_name(R"(^training-state-(\d{1,15}(\.\d{1,6})?)\.safetensors$)");
    std::string best;
    double best_kimg = -1;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::smatch m;
        const std::string name = e.path().filename().string();
        if (!std::regex_match(name, m, state_name) || !e.is_regular_file(ec)) continue;
        if (double kimg = std::stod(m[1]); kimg > best_kimg) best_kimg = kimg, best = e.path().string();
    }
    return best;
}

// The run directory of this description with the largest id in outdir; "" when there is none.
static std::string newest_matching_run(const std::string& outdir, const std::string& description) {
    std::string best;
    long long best_id = -1;
    std::error_code ec;
    if (!fs::is_directory(outdir, ec)) return "";
    static const std::regex run_name(R"(^(\d+)-(.*)$)");
    for (const auto& e : fs::directory_iterator(outdir, ec)) {
        std::smatch m;
        const std::string name = e.path().filename().string();
        if (!e.is_directory(ec) || !std::regex_match(name, m, run_name) || m[2] != description || m[1].length() > 15)
            continue;
        if (long long id = std::stoll(m[1]); id > best_id) best_id = id, best = e.path().string();
    }
    return best;
}

// With --resume FILE|DIR the run stays where its state is. An --outdir given as well must name that
// directory or the OUTDIR it was made in; another one is refused rather than silently ignored.
static void check_given_outdir(const TrainOptions& o, const std::string& run_dir) {
    if (std::find(o.explicitly_set.begin(), o.explicitly_set.end(), "/outdir") == o.explicitly_set.end()) return;
    std::error_code ec;
    const fs::path run = fs::weakly_canonical(fs::absolute(run_dir.empty() ? "." : run_dir), ec);
    const fs::path given = fs::weakly_canonical(fs::absolute(o.outdir), ec);
    if (given == run || given == run.parent_path()) return;
    throw Error("--resume " + o.resume + " continues the run in " + run.string() + ", but outdir was given as \"" +
                o.outdir + "\". Leave --outdir out with --resume, or start a new run");
}

// Rank 0's decision: (run directory, training state or "").
static std::pair<std::string, std::string> decide(const TrainOptions& o, int ranks) {
    std::error_code ec;
    if (!o.resume.empty() && o.resume != "auto") {
        std::pair<std::string, std::string> d;
        if (fs::is_directory(o.resume, ec)) {
            std::string state = newest_training_state(o.resume);
            STF_CHECK(!state.empty(), "--resume " << o.resume << ": no training-state-*.safetensors in this directory");
            d = {o.resume, state};
        } else {
            STF_CHECK(fs::exists(o.resume, ec), "--resume " << o.resume << " does not exist (give a training state, a run "
                                                                            "directory or auto)");
            d = {fs::path(o.resume).parent_path().string(), o.resume};
        }
        check_given_outdir(o, d.first);
        return d;
    }
    const std::string description = run_description(o, ranks);
    if (o.resume == "auto") {
        std::string dir = o.nosubdir ? o.outdir : newest_matching_run(o.outdir, description);
        std::string state = dir.empty() ? "" : newest_training_state(dir);
        if (!state.empty()) return {dir, state};
    }
    if (o.nosubdir) return {o.outdir, ""};
    char id[16];
    std::snprintf(id, sizeof id, "%05d", next_run_id(o.outdir));
    return {(fs::path(o.outdir) / (std::string(id) + "-" + description)).string(), ""};
}

void choose_run_directory(TrainOptions& o, ProcessGroup& group) {
    std::pair<std::string, std::string> d;
    if (group.is_root()) d = decide(o, group.size());
    if (group.distributed()) {
        std::vector<std::string> dirs = group.all_gather(d.first), states = group.all_gather(d.second);
        d = {dirs[0], states[0]};
    }
    o.outdir = d.first;
    o.resume = d.second;
}

}  // namespace stf::train
