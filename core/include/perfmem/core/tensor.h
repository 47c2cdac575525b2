// Element types, non-owning tensor views and aligned owned buffers.
//
//   perfmem::AlignedBuffer buf(4 * 6 * sizeof(float));          // 64-byte aligned, zeroed
//   perfmem::TensorView t(buf.data(), perfmem::DType::kF32, {4, 6});  // F32 [4, 6], row-major
//   t.at<float>({1, 2}) = 3.f;
//   std::cout << t.to_string();   // "f32[4, 6] {{0, 0, ...}, ...}"
//
// A TensorView never owns memory; strides are in elements (not bytes) and may describe
// non-contiguous slices. Indices are int64_t to match checkpoint shapes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace perfmem {

enum class DType : uint8_t { kF32, kBF16, kF16, kI8, kU8, kI32, kI64 };

// Bytes per element.
size_t dtype_size(DType dtype);
// Lower-case name: "f32", "bf16", "f16", "i8", "u8", "i32", "i64".
std::string_view dtype_name(DType dtype);
// Accepts perfmem names and safetensors names ("F32", "BF16", "I8", ...); nullopt otherwise.
std::optional<DType> parse_dtype(std::string_view name);
// The safetensors spelling ("F32", "BF16", ...).
std::string_view dtype_safetensors_name(DType dtype);

// Conversions used when reading bf16/f16 checkpoints into fp32 compute.
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);  // round to nearest even; NaN stays NaN
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);  // round to nearest even; overflow to inf

using Shape = std::vector<int64_t>;

// Product of dims (1 for a scalar shape {}).
int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2, 3]"
// Row-major strides in elements.
Shape contiguous_strides(const Shape& shape);

class TensorView {
 public:
  TensorView() = default;
  // Contiguous row-major view.
  TensorView(void* data, DType dtype, Shape shape);
  // Strided view; strides in elements, one per dim.
  TensorView(void* data, DType dtype, Shape shape, Shape strides);

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t dim(int64_t i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return shape_numel(shape_); }
  // Bytes covered when contiguous (numel * element size).
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  // Element offset (in elements) of a multi-index; checks rank and bounds.
  int64_t offset_of(std::initializer_list<int64_t> index) const;
  template <typename T>
  T& at(std::initializer_list<int64_t> index) const {
    return data_as<T>()[offset_of(index)];
  }
  // Element as double whatever the dtype (for printing and tests).
  double value_at_offset(int64_t element_offset) const;

  // View of rows [begin, end) along dim 0.
  TensorView slice0(int64_t begin, int64_t end) const;

  // "f32[2, 3] {{1, 2, 3}, {4, 5, 6}}"; at most max_per_dim elements per dim, then "...".
  std::string to_string(int64_t max_per_dim = 6) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Shape shape_;
  Shape strides_;
};

// Owned, zero-initialised memory aligned to `alignment` bytes (a power of two, default 64 so
// that SIMD loads and O_DIRECT reads both work). On Linux a buffer of 4 MiB or more is aligned to
// at least 2 MiB and advised to use transparent huge pages (alignment() says what it got).
// Move-only.
class AlignedBuffer {
 public:
  static constexpr size_t kDefaultAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes, size_t alignment = kDefaultAlignment);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  size_t size() const { return size_; }
  size_t alignment() const { return alignment_; }
  bool empty() const { return size_ == 0; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
  size_t alignment_ = kDefaultAlignment;
};

// A view together with the buffer that backs it.
struct Tensor {
  AlignedBuffer buffer;
  TensorView view;

  static Tensor zeros(DType dtype, Shape shape);
};

}  // namespace perfmem
