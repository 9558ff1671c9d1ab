#include "apps/common/target_flags.h"

namespace stf::apps {

const char* const kTargetFlagsUsage = R"(  --target T           dsm (the clean image), stf (Stable Target Field) or knn (nearest-neighbour
                       estimator over the whole dataset, Niedoba et al. 2024); --stf is --target stf
  --rbatch N|all       stf: reference batch size (>= the per-round batch), or all: the whole dataset
                       (the round's images stand in for their own rows); knn: draws per sample from the
                       proposal (default 1024; the kNN paper used 256)
  --k K                knn: the K nearest references get their exact posterior weight in the proposal
                       (default 2048, the kNN paper's)
)";

int64_t parse_rbatch(const std::string& text, const std::string& flag) {
    if (text == "all") return train::TrainOptions::kWholeDataset;
    size_t pos = 0;
    long long v = 0;
    try {
        v = std::stoll(text, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    STF_CHECK(pos == text.size() && pos > 0 && v >= 1,
              "--" << flag << " expects a positive number of images or 'all', got '" << text << "'");
    return v;
}

void target_flags(Flags& f, train::TrainOptions& o) {
    const bool stf_alias = f.boolean("stf");
    o.target = f.str("target", stf_alias ? "stf" : o.target);
    STF_CHECK(o.target == "dsm" || o.target == "stf" || o.target == "knn",
              "--target must be dsm, stf or knn, got '" << o.target << "'");
    STF_CHECK(!stf_alias || o.target == "stf", "--stf is --target stf; it contradicts --target " << o.target);
    if (f.given("rbatch")) o.rbatch = parse_rbatch(f.str("rbatch", ""), "rbatch");
    STF_CHECK(o.target != "knn" || o.rbatch != train::TrainOptions::kWholeDataset,
              "--rbatch all: the kNN target always uses the whole dataset; --rbatch N is its number of draws");
    o.knn_k = f.integer("k", o.knn_k);
}

}  // namespace stf::apps
