// safetensors checkpoints: reading (mmap or pread of byte ranges), sharded checkpoints, writing.
//
//   auto file = perfmem::SafetensorsFile::open("model.safetensors");
//   if (!file) { std::cerr << file.status().to_string(); return 1; }
//   const perfmem::TensorInfo* wi = file->find("encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight");
//   perfmem::TensorView v = file->view(*wi);          // zero-copy, from the mmap
//   PERFMEM_RETURN_IF_ERROR(file->read(*wi, slot, wi->nbytes()));   // pread into your buffer
//
//   auto ckpt = perfmem::SafetensorsCheckpoint::open("switch-base-8/");  // file or folder;
//   // a folder uses model.safetensors.index.json when present, else model.safetensors.
//
//   perfmem::SafetensorsWriter w;
//   w.add("shared.weight", view);
//   PERFMEM_RETURN_IF_ERROR(w.write("out/model.safetensors"));
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
// data; offsets are relative to byte 8+N. The reader validates everything before use: header
// length within the file, JSON well formed, known dtypes, shapes whose byte size equals the
// range, ranges inside the data section and not overlapping. Errors name the file, the tensor
// and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/core/tensor.h"

namespace perfmem {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t file_offset = 0;  // absolute byte offset of the first element in the file
  uint64_t size = 0;         // bytes

  uint64_t nbytes() const { return size; }
};

// Parsed and validated header. Pure function of bytes, so it can be fuzzed without files.
struct SafetensorsHeader {
  uint64_t data_offset = 0;         // 8 + N
  std::vector<TensorInfo> tensors;  // sorted by file_offset
  std::map<std::string, std::string> metadata;
};

// `prefix` holds at least the first 8 + N bytes of the file (fewer is an error naming what is
// missing); `file_size` is the whole file's size; `file_name` is used in messages only.
Result<SafetensorsHeader> parse_safetensors_header(std::string_view file_name, const uint8_t* prefix,
                                                   size_t prefix_size, uint64_t file_size);

// Largest header accepted (the format's own limit is 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

class SafetensorsFile {
 public:
  // Opens, validates the header and maps the file read-only (the file is never modified).
  static Result<SafetensorsFile> open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent.
  const TensorInfo* find(std::string_view name) const;

  // Zero-copy view into the mapping; valid while this object lives. Tensors are not aligned
  // in general (offsets need not be multiples of the element size).
  TensorView view(const TensorInfo& info) const;
  const uint8_t* mapped_bytes(const TensorInfo& info) const;

  // pread of `bytes` bytes starting `offset_in_tensor` bytes into the tensor, into dst.
  // With direct_io the read bypasses the page cache (O_DIRECT): the whole 4096-aligned span
  // around the requested bytes is read, so dst must be 4096-aligned and hold
  // direct_read_span(...).aligned_size bytes, and the requested bytes start at
  // dst + direct_read_span(info.file_offset + offset_in_tensor, bytes).lead. Returns an error
  // naming the file and tensor on a short read or a range outside the tensor.
  Status read(const TensorInfo& info, void* dst, uint64_t bytes, uint64_t offset_in_tensor = 0,
              bool direct_io = false) const;

  // For O_DIRECT: the 4096-aligned file span that covers [file_offset, file_offset+size),
  // and where the tensor starts inside it.
  struct DirectSpan {
    uint64_t aligned_offset;
    uint64_t aligned_size;
    uint64_t lead;
  };
  static DirectSpan direct_read_span(uint64_t file_offset, uint64_t size);

  int fd() const { return fd_; }
  // False on file systems that refuse O_DIRECT (tmpfs): read(..., direct_io = true) then goes
  // through the page cache, reading only the requested bytes (into the same layout).
  bool direct_io_available() const { return direct_fd_ >= 0; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  uint64_t file_size_ = 0;
  int fd_ = -1;
  mutable int direct_fd_ = -1;  // opened lazily with O_DIRECT
  void* map_ = nullptr;
  SafetensorsHeader header_;
};

// One logical checkpoint: a single file, or shards listed by model.safetensors.index.json
// ({"weight_map": {tensor: shard file}}). Every shard named is opened and validated; a tensor
// the index names but its shard lacks is an error.
class SafetensorsCheckpoint {
 public:
  // `path` is a .safetensors file, an index .json file, or a folder holding either
  // model.safetensors.index.json or model.safetensors.
  static Result<SafetensorsCheckpoint> open(const std::string& path);

  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // nullptr file when absent.
  Entry find(std::string_view name) const;
  // Error naming the checkpoint and tensor when absent.
  Result<Entry> get(std::string_view name) const;
  std::vector<std::string> tensor_names() const;  // sorted
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry, std::less<>> index_;
};

class SafetensorsWriter {
 public:
  // Copies nothing: `data` must stay valid until write(). Name must be unique.
  void add(std::string name, DType dtype, Shape shape, const void* data);
  void add(std::string name, const TensorView& contiguous_view);
  void set_metadata(std::string key, std::string value);
  size_t data_bytes() const;

  // Writes to path + ".tmp" then renames, so a failed write never leaves a partial file
  // under the final name. Tensors are laid out in insertion order.
  Status write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    Shape shape;
    const void* data;
  };
  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes model.safetensors.index.json for shards (tensor name -> shard file name).
Status write_safetensors_index(const std::string& path, const std::map<std::string, std::string>& weight_map,
                               uint64_t total_size);

}  // namespace perfmem
