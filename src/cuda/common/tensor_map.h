#pragma once
// Tensor maps for the copy engine's 2D tile copies (cp.async.bulk.tensor): a byte matrix of
// `rows` rows of `row_bytes` (a multiple of 16), copied in boxes of box_rows rows by box_bytes.
// Bytes of a box outside the matrix land as zeros. The driver's encoder is reached through the
// runtime (no link to the driver library). L2 misses fetch 128-byte lines: with the Q6_K
// mat-vec's boxes (16 rows of 224 bytes, rows 3360 bytes apart) that ran 15.3-15.4 us, against
// 15.9 with no promotion or 64 bytes and 16.4 with 256 (bench/NOTES.md run 138).
#include <cudaTypedefs.h>

#include <cstdint>

#include "mlxn/error.h"

namespace mlxn::cuda {

inline CUtensorMap byte_tile_map(const char* op, const void* base, uint64_t row_bytes, uint64_t rows,
                                 uint32_t box_bytes, uint32_t box_rows) {
  static const auto encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    const cudaError_t err =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
    return err == cudaSuccess && found == cudaDriverEntryPointSuccess
               ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn)
               : nullptr;
  }();
  if (!encode) throw_error<DeviceError>(op, "the driver has no tensor-map encoder (cuTensorMapEncodeTiled)");
  CUtensorMap map{};
  const cuuint64_t dims[2] = {row_bytes, rows}, strides[1] = {row_bytes};
  const cuuint32_t box[2] = {box_bytes, box_rows}, steps[2] = {1, 1};
  const CUresult r = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, steps,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw_error<DeviceError>(op, "cannot describe a ", rows, " x ", row_bytes, "-byte matrix to the copy engine (",
                             int(r), ")");
  return map;
}

}  // namespace mlxn::cuda
