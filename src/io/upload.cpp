#include "mlxn/io/upload.h"

#include "mlxn/error.h"

namespace mlxn::io {

Array upload(Session& s, const Tensor& host) {
  if (!host.device().is_cpu()) throw_error<InvalidArgument>("upload", "source ", host.str(), " is not a host tensor");
  if (!host.is_contiguous()) throw_error<InvalidArgument>("upload", "source ", host.str(), " is not contiguous");
  Array out = s.empty(host.shape(), host.dtype());
  const size_t bytes = host.nbytes();
  if (bytes) s.upload(out.tensor(), host.data(), bytes);
  return out;
}

}  // namespace mlxn::io
