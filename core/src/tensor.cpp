#include "perfmem/core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <sstream>
#include <utility>

#include "perfmem/core/status.h"

namespace perfmem {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kBF16: return 2;
    case DType::kF16: return 2;
    case DType::kI8: return 1;
    case DType::kU8: return 1;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  PERFMEM_CHECK(false, "unknown dtype");
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kI8: return "i8";
    case DType::kU8: return "u8";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
  }
  return "?";
}

std::string_view dtype_safetensors_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  static constexpr DType kAll[] = {DType::kF32, DType::kBF16, DType::kF16, DType::kI8,
                                   DType::kU8,  DType::kI32,  DType::kI64};
  for (DType d : kAll) {
    if (name == dtype_name(d) || name == dtype_safetensors_name(d)) return d;
  }
  return std::nullopt;
}

float bf16_to_f32(uint16_t bits) {
  uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &wide, 4);
  return out;
}

uint16_t f32_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN, keep sign
  }
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400u) == 0);
      mantissa &= 0x3ffu;
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

uint16_t f32_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs_bits >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs_bits < 0x38800000u) {                                               // result is subnormal or zero
    if (abs_bits < 0x33000000u) return sign;                                  // below half the smallest subnormal
    uint32_t exponent = abs_bits >> 23;
    uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;
    // Express the value in units of 2^-24 (the f16 subnormal step): mantissa * 2^(exponent-126).
    uint32_t total_shift = 126 - exponent;  // 14..24 here
    uint32_t result = mantissa >> total_shift;
    uint32_t remainder = mantissa & ((1u << total_shift) - 1u);
    uint32_t halfway = 1u << (total_shift - 1);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  uint32_t rebiased = abs_bits - (112u << 23);  // exponent 127 -> 15
  uint32_t result = rebiased >> 13;
  uint32_t remainder = rebiased & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

TensorView::TensorView(void* data, DType dtype, Shape shape)
    : data_(data), dtype_(dtype), shape_(std::move(shape)), strides_(contiguous_strides(shape_)) {
  for (int64_t d : shape_) PERFMEM_CHECK(d >= 0, "negative dimension");
}

TensorView::TensorView(void* data, DType dtype, Shape shape, Shape strides)
    : data_(data), dtype_(dtype), shape_(std::move(shape)), strides_(std::move(strides)) {
  PERFMEM_CHECK(shape_.size() == strides_.size(), "one stride per dimension");
  for (int64_t d : shape_) PERFMEM_CHECK(d >= 0, "negative dimension");
}

bool TensorView::is_contiguous() const { return strides_ == contiguous_strides(shape_); }

int64_t TensorView::offset_of(std::initializer_list<int64_t> index) const {
  PERFMEM_CHECK(index.size() == shape_.size(), "index rank must equal tensor rank");
  int64_t offset = 0;
  size_t d = 0;
  for (int64_t i : index) {
    PERFMEM_CHECK(i >= 0 && i < shape_[d], "index out of bounds");
    offset += i * strides_[d];
    ++d;
  }
  return offset;
}

double TensorView::value_at_offset(int64_t off) const {
  const char* base = static_cast<const char*>(data_);
  switch (dtype_) {
    case DType::kF32: {
      float v;
      std::memcpy(&v, base + off * 4, 4);
      return v;
    }
    case DType::kBF16: {
      uint16_t v;
      std::memcpy(&v, base + off * 2, 2);
      return bf16_to_f32(v);
    }
    case DType::kF16: {
      uint16_t v;
      std::memcpy(&v, base + off * 2, 2);
      return f16_to_f32(v);
    }
    case DType::kI8: return static_cast<int8_t>(base[off]);
    case DType::kU8: return static_cast<uint8_t>(base[off]);
    case DType::kI32: {
      int32_t v;
      std::memcpy(&v, base + off * 4, 4);
      return v;
    }
    case DType::kI64: {
      int64_t v;
      std::memcpy(&v, base + off * 8, 8);
      return static_cast<double>(v);
    }
  }
  return 0;
}

TensorView TensorView::slice0(int64_t begin, int64_t end) const {
  PERFMEM_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "bad slice");
  Shape shape = shape_;
  shape[0] = end - begin;
  char* base = static_cast<char*>(data_) + static_cast<size_t>(begin * strides_[0]) * dtype_size(dtype_);
  return TensorView(base, dtype_, std::move(shape), strides_);
}

namespace {
void print_rec(const TensorView& t, std::ostringstream& out, size_t dim, int64_t offset, int64_t max_per_dim) {
  if (dim == t.shape().size()) {
    out << t.value_at_offset(offset);
    return;
  }
  out << "{";
  int64_t n = t.shape()[dim];
  for (int64_t i = 0; i < n; ++i) {
    if (i) out << ", ";
    if (i == max_per_dim && n > max_per_dim + 1) {
      out << "...";
      i = n - 2;  // print the last element after the ellipsis
      continue;
    }
    print_rec(t, out, dim + 1, offset + i * t.strides()[dim], max_per_dim);
  }
  out << "}";
}
}  // namespace

std::string TensorView::to_string(int64_t max_per_dim) const {
  std::ostringstream out;
  out << dtype_name(dtype_) << shape_to_string(shape_) << " ";
  if (data_ == nullptr) {
    out << "(null)";
  } else {
    print_rec(*this, out, 0, 0, max_per_dim);
  }
  return out.str();
}

AlignedBuffer::AlignedBuffer(size_t bytes, size_t alignment) : size_(bytes), alignment_(alignment) {
  PERFMEM_CHECK(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment must be a power of two");
  if (bytes == 0) return;
#if defined(__linux__)
  // Buffers of several megabytes (model weights, expert slots) start on a 2 MiB boundary and ask
  // for transparent huge pages, as a memory-mapped checkpoint file gets from the page cache: a
  // decoding step streams every weight once, and with 4 KiB pages it walks the page tables once
  // per 4 KiB read. (On the benchmark machine the difference in decode speed was within the
  // run-to-run noise.)
  constexpr size_t kHugePage = size_t(2) << 20;
  const bool huge = bytes >= 2 * kHugePage;
  if (huge) alignment_ = alignment = std::max(alignment, kHugePage);
#endif
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  data_ = std::aligned_alloc(alignment, rounded);
  if (data_ == nullptr) throw std::bad_alloc();
#if defined(__linux__)
  if (huge) madvise(data_, rounded, MADV_HUGEPAGE);  // advice only: refused, the pages stay 4 KiB
#endif
  std::memset(data_, 0, rounded);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), alignment_(other.alignment_) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    alignment_ = other.alignment_;
  }
  return *this;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t;
  size_t bytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  t.buffer = AlignedBuffer(bytes);
  t.view = TensorView(t.buffer.data(), dtype, std::move(shape));
  return t;
}

}  // namespace perfmem
