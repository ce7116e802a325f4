// CUDA entry for gdn_chunk.
#include "cuda/common/check.h"
#include "cuda/gdn_launch.h"
#include "ops/registry.h"

namespace mlxn::cuda {

namespace {

void gdn_chunk_cuda(Session& s, const detail::GdnArgs& a) { gdn_chunk_composed(s, a); }

}  // namespace

MLXN_REGISTER_KERNEL(gdn_chunk, gdn, cuda, kFloatTypes, detail::GdnArgs, gdn_chunk_cuda);

}  // namespace mlxn::cuda
