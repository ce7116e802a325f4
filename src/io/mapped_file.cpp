#include "mlxn/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "mlxn/error.h"

namespace mlxn::io {

namespace {
[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw_error<FormatError>("mmap", "cannot ", what, " '", path, "': ", std::strerror(err));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

MappedFile MappedFile::open(const std::string& path) {
  Fd f;
  do {
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (f.fd < 0 && errno == EINTR);
  if (f.fd < 0) fail(path, "open", errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) throw_error<FormatError>("mmap", "'", path, "' is not a regular file");
  if (st.st_size < 0) throw_error<FormatError>("mmap", "'", path, "' reports a negative size");

  MappedFile m;
  m.path_ = path;
  m.size_ = static_cast<size_t>(st.st_size);
  if (m.size_ == 0) return m;  // mmap of zero bytes is an error; an empty file has no pages
  void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  if (p == MAP_FAILED) fail(path, "map", errno);
  m.data_ = static_cast<const uint8_t*>(p);
  return m;
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), path_(std::move(o.path_)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    path_ = std::move(o.path_);
  }
  return *this;
}

void MappedFile::release() noexcept {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

ByteSource ByteSource::map(const std::string& path) {
  auto m = std::make_shared<MappedFile>(MappedFile::open(path));
  ByteSource s;
  s.data = m->data();
  s.size = m->size();
  s.name = path;
  s.owner = std::move(m);
  return s;
}

ByteSource ByteSource::borrow(const uint8_t* data, size_t size, std::string name) {
  if (!data && size) throw_error<InvalidArgument>("io", "null buffer of ", size, " bytes for '", name, "'");
  ByteSource s;
  s.data = data;
  s.size = size;
  s.name = std::move(name);
  return s;
}

ByteSource ByteSource::own(std::vector<uint8_t> bytes, std::string name) {
  auto v = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  ByteSource s;
  s.data = v->data();
  s.size = v->size();
  s.name = std::move(name);
  s.owner = std::move(v);
  return s;
}

}  // namespace mlxn::io
