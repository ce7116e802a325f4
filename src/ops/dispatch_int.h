#pragma once
// Run-time integer -> compile-time template argument, the one mechanism behind every
// "switch over the supported bit widths / head dims / element sizes" in the backends.
//   if (!dispatch_int<2, 3, 4, 5, 6, 8>(bits, [&]<int B>() { run<B>(); })) throw ...;

namespace mlxn::detail {

// Calls f.template operator()<V>() for the V in Vs equal to v; false when none is.
template <int... Vs, class F>
bool dispatch_int(int v, F&& f) {
  return ((v == Vs ? (f.template operator()<Vs>(), true) : false) || ...);
}

}  // namespace mlxn::detail
