#pragma once
// One copy of a host tensor (typically a view into a memory-mapped weight file) onto the
// device of a session.
#include "mlxn/session.h"
#include "mlxn/tensor.h"

namespace mlxn::io {

// A new contiguous Array on s.device() holding the bytes of `host`, a contiguous CPU
// tensor. The copy is ordered on the session's stream; the source may be released as soon
// as this returns. On a CPU session the result is a private copy (use the view itself to
// avoid one). Throws InvalidArgument for a non-CPU or non-contiguous source.
Array upload(Session& s, const Tensor& host);

}  // namespace mlxn::io
