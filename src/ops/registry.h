#pragma once
// Kernel registration and dispatch (internal). A backend registers, per op, a function
// taking the op's typed argument struct; a frontend validates its inputs, fills that struct
// and calls dispatch(). Argument types are checked at dispatch, so a mismatch between a
// frontend and a backend is an error rather than undefined behaviour.
#include <typeindex>

#include "mlxn/error.h"
#include "mlxn/registry.h"
#include "mlxn/session.h"

namespace mlxn::detail {

using ErasedKernel = void (*)();

struct KernelRecord {
  DTypeSet dtypes;
  ErasedKernel fn = nullptr;
  const std::type_info* args = nullptr;
};

void register_kernel_erased(const char* op, const char* family, DeviceType backend, const KernelRecord& rec);
// The record for `op` on `s`'s backend; throws Unsupported naming the op, device and dtype.
const KernelRecord& find_kernel(const char* op, Device device, DType dtype);

template <class Args>
using Kernel = void (*)(Session&, const Args&);

template <class Args>
bool register_kernel(const char* op, const char* family, DeviceType backend, DTypeSet dtypes, Kernel<Args> fn) {
  register_kernel_erased(op, family, backend, KernelRecord{dtypes, reinterpret_cast<ErasedKernel>(fn), &typeid(Args)});
  return true;
}

// Runs `op` on the session's backend; `dtype` is the dtype the op is keyed on (its main input).
template <class Args>
void dispatch(const char* op, Session& s, DType dtype, const Args& args) {
  const KernelRecord& rec = find_kernel(op, s.device(), dtype);
  if (*rec.args != typeid(Args)) throw_error<Unsupported>(op, "internal: kernel argument type mismatch");
  reinterpret_cast<Kernel<Args>>(rec.fn)(s, args);
}

}  // namespace mlxn::detail

// One line per backend kernel, at namespace scope in the backend's file:
//   MLXN_REGISTER_KERNEL(rms_norm, norm, cpu, kFloatTypes, RmsNormArgs, rms_norm_cpu);
#define MLXN_REGISTER_KERNEL(op, family, backend, dtypes, Args, fn)     \
  [[maybe_unused]] static const bool mlxn_registered_##op##_##backend = \
      ::mlxn::detail::register_kernel<Args>(#op, #family, ::mlxn::DeviceType::backend, dtypes, &fn)
