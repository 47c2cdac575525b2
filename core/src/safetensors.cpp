#include "perfmem/core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"

namespace perfmem {

namespace {

constexpr uint64_t kDirectIoAlignment = 4096;

std::string tensor_place(const std::string& name) { return "header, tensor \"" + name + "\""; }

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Full pread of `size` bytes at `offset`; an error names the file and the byte range.
Status pread_all(int fd, const std::string& path, void* dst, uint64_t size, uint64_t offset) {
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(
          path, "read of bytes [" + std::to_string(offset) + ", " + std::to_string(offset + size) + ") failed", errno);
    }
    if (n == 0) {
      return input_error(path, "bytes [" + std::to_string(offset) + ", " + std::to_string(offset + size) + ")",
                         "the file to hold them",
                         "end of file after " + std::to_string(offset + done) + " bytes (truncated?)");
    }
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Result<SafetensorsHeader> parse_safetensors_header(std::string_view file_name, const uint8_t* prefix,
                                                   size_t prefix_size, uint64_t file_size) {
  if (file_size < 8 || prefix_size < 8) {
    return input_error(file_name, "byte 0", "an 8-byte header length",
                       "a file of " + std::to_string(file_size) + " bytes");
  }
  uint64_t header_len = read_le64(prefix);
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return input_error(file_name, "header length (bytes 0-7)",
                       "at most " + std::to_string(kMaxSafetensorsHeaderBytes) + " bytes", std::to_string(header_len));
  }
  if (header_len > file_size - 8) {
    return input_error(file_name, "header length (bytes 0-7)",
                       "a header that fits in the file (at most " + std::to_string(file_size - 8) + " bytes)",
                       std::to_string(header_len));
  }
  if (prefix_size < 8 + header_len) {
    return input_error(file_name, "header", std::to_string(8 + header_len) + " bytes available",
                       std::to_string(prefix_size));
  }
  std::string_view text(reinterpret_cast<const char*>(prefix + 8), header_len);
  auto parsed = parse_json(text, std::string(file_name) + " (header)");
  if (!parsed) return parsed.status();
  const Json& root = *parsed;
  if (!root.is_object()) { return input_error(file_name, "header", "a JSON object", root.type_name()); }

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const uint64_t data_size = file_size - header.data_offset;

  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return input_error(file_name, "header, \"__metadata__\"", "an object of strings", entry.type_name());
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return input_error(file_name, "header, \"__metadata__\".\"" + m.key() + "\"", "a string value",
                             m.value().type_name());
        }
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string place = tensor_place(name);
    if (!entry.is_object()) return input_error(file_name, place, "an object", entry.type_name());

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return input_error(file_name, place, "a string \"dtype\"");
    }
    std::string dtype_text = dtype_it->get<std::string>();
    auto dtype = parse_dtype(dtype_text);
    if (!dtype || dtype_text != dtype_safetensors_name(*dtype)) {
      return input_error(file_name, place, "dtype one of F32, BF16, F16, I8, U8, I32, I64", "\"" + dtype_text + "\"");
    }

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return input_error(file_name, place, "an array \"shape\"");
    }
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    uint64_t numel = 1;
    for (const Json& d : *shape_it) {
      if (!d.is_number_unsigned()) {
        return input_error(file_name, place, "non-negative integer dimensions", d.dump());
      }
      uint64_t dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel)) {
        return input_error(file_name, place, "a shape whose size fits in 64 bits", shape_it->dump());
      }
      info.shape.push_back(static_cast<int64_t>(dim));
    }

    auto off_it = entry.find("data_offsets");
    if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2 || !(*off_it)[0].is_number_unsigned() ||
        !(*off_it)[1].is_number_unsigned()) {
      return input_error(file_name, place, "\"data_offsets\" as [begin, end] of integers",
                         off_it == entry.end() ? "none" : off_it->dump());
    }
    uint64_t begin = (*off_it)[0].get<uint64_t>(), end = (*off_it)[1].get<uint64_t>();
    if (begin > end) { return input_error(file_name, place, "data_offsets begin <= end", off_it->dump()); }
    if (end > data_size) {
      return input_error(file_name, place,
                         "data_offsets within the data section of " + std::to_string(data_size) + " bytes",
                         off_it->dump() + " (file truncated or header lying)");
    }
    uint64_t expected_bytes = 0;
    const std::string shape_text = "shape " + shape_to_string(info.shape) + " of " + dtype_text;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dtype)), &expected_bytes))
      return input_error(file_name, place, shape_text + " to take fewer than 2^64 bytes",
                         std::to_string(numel) + " elements");
    if (expected_bytes != end - begin)
      return input_error(file_name, place,
                         "data_offsets spanning " + std::to_string(expected_bytes) + " bytes (" + shape_text + ")",
                         std::to_string(end - begin) + " bytes");
    info.file_offset = header.data_offset + begin;
    info.size = end - begin;
    header.tensors.push_back(std::move(info));
  }

  std::sort(header.tensors.begin(), header.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.file_offset != b.file_offset ? a.file_offset < b.file_offset : a.size < b.size;
  });
  for (size_t i = 1; i < header.tensors.size(); ++i) {
    const TensorInfo& prev = header.tensors[i - 1];
    const TensorInfo& cur = header.tensors[i];
    if (cur.size > 0 && prev.file_offset + prev.size > cur.file_offset) {
      return input_error(file_name, tensor_place(cur.name), "a byte range that does not overlap another tensor's",
                         "overlap with \"" + prev.name + "\"");
    }
  }
  return header;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;
  file.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd_ < 0) return io_error(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(file.fd_, &st) != 0) return io_error(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) return input_error(path, "file", "a regular file");
  file.file_size_ = static_cast<uint64_t>(st.st_size);

  uint8_t len_bytes[8] = {};
  if (file.file_size_ >= 8) PERFMEM_RETURN_IF_ERROR(pread_all(file.fd_, path, len_bytes, 8, 0));
  uint64_t header_len = file.file_size_ >= 8 ? read_le64(len_bytes) : 0;
  std::vector<uint8_t> prefix(8);
  std::memcpy(prefix.data(), len_bytes, 8);
  if (file.file_size_ >= 8 && header_len <= kMaxSafetensorsHeaderBytes && header_len <= file.file_size_ - 8) {
    prefix.resize(8 + header_len);
    PERFMEM_RETURN_IF_ERROR(pread_all(file.fd_, path, prefix.data() + 8, header_len, 8));
  }
  auto header = parse_safetensors_header(path, prefix.data(), prefix.size(), file.file_size_);
  if (!header) return header.status();
  file.header_ = std::move(*header);

  if (file.file_size_ > 0) {
    void* map = ::mmap(nullptr, file.file_size_, PROT_READ, MAP_PRIVATE, file.fd_, 0);
    if (map == MAP_FAILED) return io_error(path, "cannot map", errno);
    file.map_ = map;
  }
  // O_DIRECT is optional: some file systems (tmpfs) refuse it; reads then fall back to pread.
  file.direct_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      file_size_(o.file_size_),
      fd_(std::exchange(o.fd_, -1)),
      direct_fd_(std::exchange(o.direct_fd_, -1)),
      map_(std::exchange(o.map_, nullptr)),
      header_(std::move(o.header_)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    this->~SafetensorsFile();
    new (this) SafetensorsFile(std::move(o));
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, file_size_);
  if (fd_ >= 0) ::close(fd_);
  if (direct_fd_ >= 0) ::close(direct_fd_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  for (const TensorInfo& t : header_.tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

const uint8_t* SafetensorsFile::mapped_bytes(const TensorInfo& info) const {
  PERFMEM_CHECK(info.file_offset + info.size <= file_size_, "tensor outside the mapped file");
  return static_cast<const uint8_t*>(map_) + info.file_offset;
}

TensorView SafetensorsFile::view(const TensorInfo& info) const {
  return TensorView(const_cast<uint8_t*>(mapped_bytes(info)), info.dtype, info.shape);
}

SafetensorsFile::DirectSpan SafetensorsFile::direct_read_span(uint64_t file_offset, uint64_t size) {
  uint64_t start = file_offset / kDirectIoAlignment * kDirectIoAlignment;
  uint64_t end = (file_offset + size + kDirectIoAlignment - 1) / kDirectIoAlignment * kDirectIoAlignment;
  return {start, end - start, file_offset - start};
}

Status SafetensorsFile::read(const TensorInfo& info, void* dst, uint64_t bytes, uint64_t offset_in_tensor,
                             bool direct_io) const {
  if (offset_in_tensor > info.size || bytes > info.size - offset_in_tensor) {
    return input_error(
        path_, "tensor \"" + info.name + "\"", "a read inside its " + std::to_string(info.size) + " bytes",
        "bytes [" + std::to_string(offset_in_tensor) + ", " + std::to_string(offset_in_tensor + bytes) + ")");
  }
  uint64_t offset = info.file_offset + offset_in_tensor;
  if (!direct_io) return pread_all(fd_, path_, dst, bytes, offset).with_context("tensor \"" + info.name + "\"");

  DirectSpan span = direct_read_span(offset, bytes);
  PERFMEM_CHECK(reinterpret_cast<uintptr_t>(dst) % kDirectIoAlignment == 0,
                "O_DIRECT destination must be 4096-byte aligned");
  if (direct_fd_ < 0) {  // file system without O_DIRECT: same layout, through the page cache
    return pread_all(fd_, path_, static_cast<uint8_t*>(dst) + span.lead, bytes, offset)
        .with_context("tensor \"" + info.name + "\"");
  }
  // The aligned span may run past the end of the file; a short final read is expected there.
  uint64_t readable = std::min(span.aligned_size, file_size_ - span.aligned_offset);
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t done = 0;
  while (done < readable) {
    ssize_t n =
        ::pread(direct_fd_, out + done, span.aligned_size - done, static_cast<off_t>(span.aligned_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path_, "direct read of tensor \"" + info.name + "\" failed", errno);
    }
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  if (done < span.lead + bytes) {
    return input_error(path_, "tensor \"" + info.name + "\"", "its bytes in the file",
                       "end of file (truncated after opening?)");
  }
  return Status::Ok();
}

Result<SafetensorsCheckpoint> SafetensorsCheckpoint::open(const std::string& path) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint ckpt;
  ckpt.path_ = path;
  std::error_code ec;
  std::string index_path;
  std::string single_path;
  if (fs::is_directory(path, ec)) {
    fs::path dir(path);
    if (fs::exists(dir / "model.safetensors.index.json", ec)) {
      index_path = (dir / "model.safetensors.index.json").string();
    } else if (fs::exists(dir / "model.safetensors", ec)) {
      single_path = (dir / "model.safetensors").string();
    } else {
      return not_found_error(path,
                             "expected model.safetensors.index.json or model.safetensors "
                             "in this folder");
    }
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    index_path = path;
  } else {
    single_path = path;
  }

  auto add_file = [&ckpt](const std::string& file_path) -> Result<const SafetensorsFile*> {
    auto file = SafetensorsFile::open(file_path);
    if (!file) return file.status();
    ckpt.files_.push_back(std::make_unique<SafetensorsFile>(std::move(*file)));
    return ckpt.files_.back().get();
  };

  if (!single_path.empty()) {
    auto file = add_file(single_path);
    if (!file) return file.status();
    for (const TensorInfo& t : (*file)->tensors()) ckpt.index_[t.name] = Entry{*file, &t};
    return ckpt;
  }

  auto index = read_json_file(index_path);
  if (!index) return index.status();
  auto map_it = index->is_object() ? index->find("weight_map") : index->end();
  if (!index->is_object() || map_it == index->end() || !map_it->is_object()) {
    return input_error(index_path, "top level", "an object with a \"weight_map\" object");
  }
  fs::path base = fs::path(index_path).parent_path();
  std::map<std::string, const SafetensorsFile*> shards;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it.value().is_string()) {
      return input_error(index_path, "weight_map \"" + it.key() + "\"", "a shard file name", it.value().type_name());
    }
    std::string shard = it.value().get<std::string>();
    fs::path rel(shard);
    bool escapes = rel.is_absolute() || shard.empty();
    for (const auto& part : rel) escapes = escapes || part == "..";
    if (escapes) {
      return input_error(index_path, "weight_map \"" + it.key() + "\"", "a shard file inside the checkpoint folder",
                         "\"" + shard + "\"");
    }
    if (!shards.count(shard)) {
      auto file = add_file((base / rel).string());
      if (!file) return file.status().with_context(index_path + ": shard \"" + shard + "\"");
      shards[shard] = *file;
    }
    const SafetensorsFile* file = shards[shard];
    const TensorInfo* info = file->find(it.key());
    if (info == nullptr) {
      return input_error(index_path, "weight_map \"" + it.key() + "\"", "the tensor in shard \"" + shard + "\"",
                         "it missing from the shard");
    }
    ckpt.index_[it.key()] = Entry{file, info};
  }
  return ckpt;
}

SafetensorsCheckpoint::Entry SafetensorsCheckpoint::find(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return Entry{nullptr, nullptr};
  return it->second;
}

Result<SafetensorsCheckpoint::Entry> SafetensorsCheckpoint::get(std::string_view name) const {
  Entry e = find(name);
  if (e.file == nullptr) { return not_found_error(path_, "tensor \"" + std::string(name) + "\" is missing"); }
  return e;
}

std::vector<std::string> SafetensorsCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(index_.size());
  for (const auto& [name, entry] : index_) names.push_back(name);
  return names;
}

void SafetensorsWriter::add(std::string name, DType dtype, Shape shape, const void* data) {
  for (const Pending& p : tensors_) PERFMEM_CHECK(p.name != name, "duplicate tensor name " + name);
  PERFMEM_CHECK(name != "__metadata__", "reserved tensor name");
  tensors_.push_back(Pending{std::move(name), dtype, std::move(shape), data});
}

void SafetensorsWriter::add(std::string name, const TensorView& view) {
  PERFMEM_CHECK(view.is_contiguous(), "safetensors needs contiguous tensors");
  add(std::move(name), view.dtype(), view.shape(), view.data());
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

size_t SafetensorsWriter::data_bytes() const {
  size_t total = 0;
  for (const Pending& p : tensors_) { total += static_cast<size_t>(shape_numel(p.shape)) * dtype_size(p.dtype); }
  return total;
}

Status SafetensorsWriter::write(const std::string& path) const {
  Json header = Json::object();
  uint64_t offset = 0;
  for (const Pending& p : tensors_) {
    uint64_t bytes = static_cast<uint64_t>(shape_numel(p.shape)) * dtype_size(p.dtype);
    header[p.name] = {{"dtype", std::string(dtype_safetensors_name(p.dtype))},
                      {"shape", p.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned

  PERFMEM_ASSIGN_OR_RETURN(AtomicFileWriter out, AtomicFileWriter::create(path));
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  PERFMEM_RETURN_IF_ERROR(out.write(len, 8));
  PERFMEM_RETURN_IF_ERROR(out.write(text.data(), n));
  for (const Pending& p : tensors_) {
    size_t bytes = static_cast<size_t>(shape_numel(p.shape)) * dtype_size(p.dtype);
    PERFMEM_RETURN_IF_ERROR(out.write(p.data, bytes));
  }
  return out.commit();
}

Status write_safetensors_index(const std::string& path, const std::map<std::string, std::string>& weight_map,
                               uint64_t total_size) {
  Json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  return write_text_file(path, index.dump(2) + "\n");
}

}  // namespace perfmem
