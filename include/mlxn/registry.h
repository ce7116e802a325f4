#pragma once
// The op registry: which ops exist, and which backend implements each for which dtypes.
// Backends register their kernels at load time; the frontends dispatch through the same
// table, so this listing is exactly what the library can run.
#include <string>
#include <vector>

#include "mlxn/device.h"
#include "mlxn/dtype.h"

namespace mlxn {

struct OpListing {
  std::string name;
  std::string family;
  DTypeSet dtypes[kDeviceTypes];  // indexed by DeviceType; empty = no implementation
};

// Every registered op, sorted by family then name.
std::vector<OpListing> list_ops();
// True when `op` has a kernel for `device`'s backend accepting `dtype`.
bool supports(const std::string& op, Device device, DType dtype);

}  // namespace mlxn
