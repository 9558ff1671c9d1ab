// The training-target flags train_cifar and bench_train share: --target dsm|stf|knn (--stf is --target
// stf), --rbatch N|all and --k K.
#pragma once
#include <string>

#include "apps/common/flags.h"
#include "train/options.h"

namespace stf::apps {

// Help text for the flags below (two-space indent, as the programs' usage texts).
extern const char* const kTargetFlagsUsage;

// Reads --target, --stf, --rbatch and --k into o, starting from o's values. Throws stf::Error naming the flag
// for an unknown target, --stf beside another --target, or an --rbatch that is neither a size nor "all".
void target_flags(Flags& f, train::TrainOptions& o);

// "all" -> TrainOptions::kWholeDataset, else a positive integer (`flag` names it in errors).
int64_t parse_rbatch(const std::string& text, const std::string& flag);

}  // namespace stf::apps
